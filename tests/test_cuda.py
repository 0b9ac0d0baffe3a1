"""CUDA: samplers, networks and training on a GPU agree with the CPU (skipped where there is none).

CI has no GPU; these run when the suite is run on a machine that has one.
"""

import pytest
import torch

from scoresde import samplers
from scoresde.models import ScoreUNet
from scoresde.oracle import GaussianMixture
from scoresde.samplers.noise import per_sample_generators
from scoresde.sde_lib import VESDE, VPSDE, subVPSDE
from scoresde.train import checkpoint
from tests.helpers import final_tensors, logged_losses, tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MIXTURE = GaussianMixture(
    torch.tensor([0.5, 0.3, 0.2]), torch.tensor([[-1.0, 0.5], [1.5, -0.5], [0.2, 2.0]]), torch.tensor([0.3, 0.5, 0.4])
)


@pytest.mark.parametrize("sde", [VPSDE(), subVPSDE(), VESDE()], ids=["vp", "subvp", "ve"])
@pytest.mark.parametrize("name", samplers.DETERMINISTIC + ("probability_flow",))
def test_deterministic_samplers_match_the_cpu(name, sde):
    """Same x_T, same exact score, float64: the CUDA result is the CPU result to round-off."""
    x_T = sde.prior_sampling((256, 2), generator=torch.Generator().manual_seed(0)).double()
    steps = None if name == "probability_flow" else 12
    cpu, cpu_info = samplers.sample(name, sde, MIXTURE.score_fn(sde), x_T=x_T, steps=steps)
    gpu, gpu_info = samplers.sample(name, sde, MIXTURE.score_fn(sde), x_T=x_T.cuda(), steps=steps)
    assert gpu.is_cuda and gpu.dtype == torch.float64
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-6, atol=1e-6)
    assert gpu_info["nfe"] == cpu_info["nfe"]


@pytest.mark.parametrize("name", ["euler_maruyama", "reverse_diffusion", "ancestral", "predictor_corrector", "annealed_langevin"])
def test_stochastic_samplers_run_and_reproduce_on_cuda(name):
    sde = VPSDE()
    runs = []
    for _ in range(2):
        generator = torch.Generator("cuda").manual_seed(3)
        x, info = samplers.sample(name, sde, MIXTURE.score_fn(sde), (512, 2), steps=50, generator=generator, device="cuda")
        assert x.is_cuda and torch.isfinite(x).all()
        runs.append(x)
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("name", ["euler_maruyama", "ancestral", "predictor_corrector"])
def test_per_sample_cpu_generators_give_the_cpu_samples_on_cuda(name):
    """One CPU generator per sample: the noise is drawn on the CPU, so the device does not change it."""
    sde = VESDE()
    x_cpu, _ = samplers.sample(name, sde, MIXTURE.score_fn(sde), (32, 2), steps=20, generator=per_sample_generators(range(32)))
    x_gpu, _ = samplers.sample(
        name, sde, MIXTURE.score_fn(sde), (32, 2), steps=20, generator=per_sample_generators(range(32)), device="cuda"
    )
    assert x_gpu.is_cuda
    torch.testing.assert_close(x_gpu.cpu(), x_cpu, rtol=1e-4, atol=1e-4)


def test_unet_on_cuda_matches_cpu():
    torch.manual_seed(0)
    net = ScoreUNet((1, 16, 16), nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,)).double()
    x, label = torch.randn(4, 1, 16, 16, dtype=torch.float64), torch.rand(4, dtype=torch.float64)
    with torch.no_grad():
        cpu = net(x, label)
        gpu = net.cuda()(x.cuda(), label.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda(precision, tmp_path):
    from scoresde import run_lib

    run_lib.train(tiny_config(**{"device": "cuda", "training.precision": precision}), tmp_path)
    losses = [loss for _, loss in logged_losses(tmp_path)]
    assert len(losses) == 12 and all(torch.isfinite(torch.tensor(losses)))
    state = checkpoint.read_state(checkpoint.latest(tmp_path / "checkpoints"))
    assert bool(state["extra"]["scaler"]) == (precision == "fp16")  # the scaler's state is checkpointed


def test_resume_on_cuda_is_exact(tmp_path):
    from scoresde import run_lib

    run_lib.train(tiny_config(**{"device": "cuda"}), tmp_path / "straight")
    run_lib.train(tiny_config(**{"device": "cuda", "training.n_steps": 5}), tmp_path / "resumed")
    run_lib.train(tiny_config(**{"device": "cuda"}), tmp_path / "resumed")
    assert logged_losses(tmp_path / "resumed") == logged_losses(tmp_path / "straight")
    a, b = final_tensors(tmp_path / "straight")[1], final_tensors(tmp_path / "resumed")[1]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("exact", [True, False])
def test_likelihood_on_cuda_matches_cpu(exact):
    from scoresde import likelihood

    sde = VESDE()
    x = MIXTURE.sample(32, generator=torch.Generator().manual_seed(4)).double()
    kwargs = {"exact_divergence": exact, "n_probes": 4, "rtol": 1e-6, "atol": 1e-6}
    probes_cpu, probes_gpu = torch.Generator().manual_seed(5), torch.Generator("cuda").manual_seed(5)
    cpu, cpu_info = likelihood.log_likelihood(sde, MIXTURE.score_fn(sde), x, generator=probes_cpu, **kwargs)
    gpu, gpu_info = likelihood.log_likelihood(sde, MIXTURE.score_fn(sde), x.cuda(), generator=probes_gpu, **kwargs)
    assert gpu.is_cuda and torch.isfinite(gpu).all()
    if exact:  # no random probes: the same numbers to round-off
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-8)
        assert gpu_info["nfe"] == cpu_info["nfe"]
    else:  # other probe draws: agreement within the standard errors
        se = (cpu_info["stderr"] ** 2 + gpu_info["stderr"].cpu() ** 2).sqrt()
        assert ((gpu.cpu() - cpu).abs() < 5 * se).all()


def _controllable_problem(device):
    """Known first coordinate, a mixture with class labels (components 0, 1 -> class 0, 1)."""
    x0 = MIXTURE.sample(64, generator=torch.Generator().manual_seed(6)).double().to(device)
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64, device=device).expand_as(x0)
    return x0, mask


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_fixed_noise_inpainting_matches_the_cpu(sampler):
    from scoresde import controllable

    sde = VPSDE()
    results = []
    for device in ("cpu", "cuda"):
        known, mask = _controllable_problem(device)
        generators = per_sample_generators(range(len(known)))  # CPU generators: the same x_T on both devices
        x, _ = controllable.inpaint(
            sampler, sde, MIXTURE.score_fn(sde), known, mask, noise="fixed", generator=generators, steps=15
        )
        assert x.device.type == device
        results.append(x.cpu())
    torch.testing.assert_close(results[1], results[0], rtol=1e-6, atol=1e-6)


def test_guidance_on_cuda_matches_the_cpu():
    """Classifier guidance (autograd through the exact classifier) and CFG, on both devices."""
    from scoresde import controllable

    sde, classes = VESDE(), torch.tensor([0, 1, 1])
    results = []
    for device in ("cpu", "cuda"):
        labels = (torch.arange(64) % 2).to(device)
        x_T = sde.prior_sampling((64, 2), generator=torch.Generator().manual_seed(9)).double().to(device)
        classifier = lambda x, t: MIXTURE.class_log_posterior(x, sde, t, classes.to(device))  # noqa: E731
        guided = controllable.classifier_guidance(MIXTURE.score_fn(sde), classifier, labels, scale=2.0)
        free = controllable.classifier_free_guidance(MIXTURE.class_score_fn(sde, classes.to(device)), labels, scale=2.0)
        pair = [samplers.sample("dpmpp_2m", sde, score, x_T=x_T, steps=12)[0] for score in (guided, free)]
        assert all(x.is_cuda == (device == "cuda") for x in pair)
        results.append([x.cpu() for x in pair])
    for cpu, gpu in zip(*results):
        torch.testing.assert_close(gpu, cpu, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(results[1][0], results[1][1], rtol=1e-6, atol=1e-6)  # Bayes: the same samples


def test_smc_inpainting_and_colorization_run_on_cuda():
    from scoresde import controllable

    sde = VPSDE()
    known, mask = _controllable_problem("cuda")
    runs = []
    for _ in range(2):
        particles, info = controllable.smc_inpaint(
            sde,
            MIXTURE.score_fn(sde),
            known[:8],
            mask[:8],
            n_particles=16,
            steps=30,
            generator=torch.Generator("cuda").manual_seed(2),
        )
        assert particles.is_cuda and particles.shape == (8, 16, 2) and torch.isfinite(particles).all()
        assert torch.equal(particles[..., 0], known[:8, None, 0].expand(8, 16))
        runs.append(particles)
    assert torch.equal(runs[0], runs[1])
    rgb = GaussianMixture(torch.tensor([0.5, 0.5]), torch.randn(2, 12, generator=torch.Generator().manual_seed(4)) * 0.5, 0.2)
    score = lambda x, t: rgb.score(x.reshape(len(x), 12), t, sde).reshape(x.shape)  # noqa: E731  (3x2x2 images)
    gray = 0.1 * torch.randn(4, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5)).cuda()
    x, _ = controllable.colorize("ddim", sde, score, gray, steps=10, generator=torch.Generator("cuda").manual_seed(3))
    assert x.is_cuda and x.shape == (4, 3, 2, 2)
    torch.testing.assert_close(x.mean(dim=1, keepdim=True), gray, rtol=0, atol=1e-10)


def test_fid_inception_on_cuda_matches_the_cpu():
    from scoresde.eval.inception import FIDInceptionV3, inception_features

    torch.manual_seed(0)
    model = FIDInceptionV3().eval()
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))  # gray digits-sized, resized to 299
    cpu = inception_features(model, images)
    gpu = inception_features(model.cuda(), images)
    for a, b in zip(gpu, cpu):
        assert a.shape == b.shape
        torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-3, atol=1e-3)
