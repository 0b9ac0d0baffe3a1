"""The fast ODE solvers at low NFE on the trained digits U-Net (`configs/digits_unet_vp.py`).

Train first, then benchmark in the same work directory:

    python main.py --config configs/digits_unet_vp.py --workdir runs/demo-unet --mode train
    python main.py --config configs/benchmark/digits_fast.py --workdir runs/demo-unet --mode benchmark

Metrics live in the feature space of a small classifier trained on the same digits (cached in
<workdir>/benchmark/ with its hash and held-out accuracy); `flow_rms` is measured against the
model's own flow solved by the adaptive solver at rtol 1e-5.
"""

from configs.digits_unet_vp import get_config as digits_config


def get_config():
    config = digits_config()
    b = config.benchmark
    b.target = "checkpoint"
    b.samplers = ("ddim", "heun", "dpmpp_2m", "dpmpp_3m", "ipndm", "unipc")
    b.budgets = (10, 20, 50)
    b.seeds = 2
    b.n_samples = 500
    b.plot_budget = 10
    config.sampling.time_grid = "log_snr"
    return config
