"""The DVC stages: thin steps wiring components to Ray, MLflow and DVC (see dvc.yaml)."""
