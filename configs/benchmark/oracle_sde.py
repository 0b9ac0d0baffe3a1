"""The classical stochastic samplers (ancestral, Euler–Maruyama, reverse diffusion,
predictor–corrector, annealed Langevin) at high NFE on the 2-D ring, under VE and VP, with the
best fast ODE solver for comparison.

    python main.py --config configs/benchmark/oracle_sde.py --workdir runs/bench_sde --mode benchmark
"""

from scoresde.config.defaults import get_config as base_config


def get_config():
    config = base_config()
    b = config.benchmark
    b.problems = ("ring",)
    b.sdes = ("vesde", "vpsde")
    b.samplers = ("ancestral", "euler_maruyama", "reverse_diffusion", "predictor_corrector", "annealed_langevin", "dpmpp_3m")
    b.budgets = (50, 100, 200, 1000)
    b.seeds = 3
    b.n_samples = 2000
    b.plot_budget = 200
    config.sampling.predictor_corrector.corrector_steps = 1
    config.sampling.annealed_langevin.steps_per_level = 1
    return config
