"""Per-epoch training seconds of cyclegan, stargan and puzzle_gan on the 8x8 digits, in-process, one thread
(the params.yaml entries; ~1350 training images, batches of 64). Run: python benchmarks/image_to_image_timing.py"""
import time, torch
torch.set_num_threads(1)
from sklearn.datasets import load_digits
from components.config import load_params, architecture_params
from components.data.batch import Batch, DataSpec, DomainSpec
from components.data.domains import TRANSFORMS
from components.models import build_model
x = torch.tensor(load_digits().images / 16.0, dtype=torch.float32)[:, None][:1350]   # ~ the train split
params = load_params()
def epoch(model, batches):
    o = model.configure_optimizers(2e-4); model.train()
    t = time.perf_counter()
    for b in batches: model.training_step(b, o)
    return time.perf_counter() - t
half = len(x) // 2
plain, thick = x[:half], torch.from_numpy(TRANSFORMS["thicken"].apply(x[half:].numpy()))
pairs = [Batch(torch.cat([plain[i:i+32], thick[i:i+32]]), domains=torch.arange(2).repeat_interleave(len(plain[i:i+32]))) for i in range(0, half, 32)]
names = ("plain", "thick", "thin", "rotated")
cyc = build_model("cyclegan", DataSpec("digits", tuple(DomainSpec(n, (1, 8, 8), 17) for n in names[:2]), fields=("domains",)), architecture_params(params, "cyclegan")[1])
q = len(x) // 4
doms = torch.arange(4).repeat_interleave(q)
imgs = torch.cat([torch.from_numpy(TRANSFORMS[t].apply(x[i*q:(i+1)*q].numpy())) for i, t in enumerate(["identity", "thicken", "thin", "rotate90"])])
attrs = torch.tensor([[0.,0,0],[0,1,0],[0,0,1],[1,0,0]])[doms]
perm = torch.randperm(len(imgs))
star_batches = [Batch(imgs[perm[i:i+64]], domains=doms[perm[i:i+64]], attributes=attrs[perm[i:i+64]]) for i in range(0, len(imgs), 64)]
star = build_model("stargan", DataSpec("digits", tuple(DomainSpec(n, (1, 8, 8), 17) for n in names), attribute_names=("rotated", "thick", "thin"), fields=("domains", "attributes")), architecture_params(params, "stargan")[1])
puz = build_model("puzzle_gan", DataSpec.single((1, 8, 8), 17), architecture_params(params, "puzzle_gan")[1])
puz_batches = [Batch(x[i:i+64]) for i in range(0, len(x), 64)]
for name, m, b in [("cyclegan", cyc, pairs), ("stargan", star, star_batches), ("puzzle_gan", puz, puz_batches)]:
    times = [epoch(m, b) for _ in range(3)]
    print(f"{name}: {len(b)} steps/epoch, epoch seconds {', '.join(f'{t:.2f}' for t in times)}")
