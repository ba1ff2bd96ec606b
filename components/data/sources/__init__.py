"""Data sources: the registry (`registry.py`) and its loaders, one module per kind; importing the
package registers every loader."""

from components.data.sources import digits, images  # noqa: F401  (they register themselves)
from components.data.sources.registry import (REGISTRY, DataSourceError, SourceFile, SourceOptions, Splits,
                                              available_sources, check_md5, download, load_source, locate,
                                              register_source, split_by_fractions)

__all__ = ["REGISTRY", "DataSourceError", "SourceFile", "SourceOptions", "Splits", "available_sources", "check_md5",
           "download", "load_source", "locate", "register_source", "split_by_fractions"]
