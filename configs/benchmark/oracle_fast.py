"""Every fixed-step ODE solver at low NFE on the exact-score problems (2-D ring, 64-D stiff
mixture) under VE and VP; the adaptive probability-flow solver for reference.

    python main.py --config configs/benchmark/oracle_fast.py --workdir runs/bench_fast --mode benchmark
"""

from scoresde.config.defaults import get_config as base_config


def get_config():
    config = base_config()
    b = config.benchmark
    b.problems = ("ring", "stiff64")
    b.sdes = ("vesde", "vpsde")
    b.samplers = ("ode_euler", "ddim", "heun", "dpmpp_2m", "dpmpp_3m", "ipndm", "lms", "unipc")
    b.budgets = (6, 10, 20, 50)
    b.seeds = 3
    b.n_samples = 1000
    b.plot_budget = 10
    config.sde.sigma_max = 50.0
    return config
