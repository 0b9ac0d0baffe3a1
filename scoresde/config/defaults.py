"""Every configurable value with its default. Experiment files start from `get_config()` here.

Override any value on the command line: `--config.training.n_steps=200`.
"""

import ml_collections

from scoresde import samplers


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 42
    config.device = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    config.allow_config_mismatch = False  # load a checkpoint whose SDE / network / data config differs from this one (warns)

    config.data = data = ml_collections.ConfigDict()
    data.dataset = "eight_gaussians"  # a toy name, "digits", "colored_digits", "mnist5k", "npz", "folder" or "cifar10"
    data.path = ""  # npz: the .npz file; folder: the image folder; cifar10: torchvision's root folder
    data.image_size = 0  # folder: resize the shorter side to this and centre-crop square (0: not used)
    data.grayscale = False  # folder: load one grey channel instead of RGB
    data.n_examples = 10000  # toy data only: how many points to generate
    data.pad_to = 0  # images: zero-pad to this square size (0: no padding)
    data.centered = True  # images: scale [0, 1] to [-1, 1] for the model
    data.random_flip = False  # images: mirror each training example left-right with probability 1/2
    data.cache = True  # folder, npz: decode once into a prepared copy (data/prepared.py) and stream it; False: load whole
    data.prefetch = False  # read the next step's batch in a thread while this one computes (for GPUs: it slows a 2-core CPU)
    data.num_workers = 0  # streamed data: worker processes reading the coming steps' rows ahead (pinned on CUDA); 0: none
    data.cache_dir = ""  # where those copies live ("" = $XDG_CACHE_HOME/scoresde/prepared, i.e. ~/.cache/...)
    data.test_fraction = 0.1  # held out for the quality figure

    config.sde = sde = ml_collections.ConfigDict()
    sde.name = "vpsde"  # "vpsde", "subvpsde", "vesde", "cosinevpsde", "edmsde"
    sde.beta_min = 0.1  # VP / sub-VP
    sde.beta_max = 20.0
    sde.sigma_min = 0.01  # VE
    sde.sigma_max = 50.0  # VE; EDM (where it is also the end time T)
    sde.s = 0.008  # cosine VP: the schedule's offset
    sde.max_beta = 0.999  # cosine VP: the clipping of the chain's betas
    sde.num_scales = 1000  # N: steps of the discrete chain, the default sampler step count

    config.model = model = ml_collections.ConfigDict()
    model.name = "mlp"  # "mlp" (flattened input) or "unet" (NCSN++ / DDPM++); each takes its own keys below
    model.fourier_scale = 16.0  # both: std of the Gaussian Fourier frequencies
    model.dropout = 0.0  # both
    # mlp
    model.width = 256
    model.depth = 3
    model.embed_dim = 128
    model.time_embedding = "fourier"  # "fourier" or "sinusoidal"
    # unet: the architecture options of Song et al. 2021 (see scoresde/models/unet.py); NCSN++ defaults
    model.nf = 64  # channels of the first level; level i has nf * ch_mult[i]
    model.ch_mult = (1, 2, 2)
    model.num_res_blocks = 2
    model.attn_resolutions = (8,)  # feature-map sizes with self-attention
    model.resblock_type = "biggan"  # "biggan" or "ddpm"
    model.resamp_with_conv = True
    model.fir = True  # FIR (anti-aliased) resampling
    model.fir_kernel = (1, 3, 3, 1)
    model.skip_rescale = True
    model.progressive = "none"  # "none", "output_skip", "residual"
    model.progressive_input = "residual"  # "none", "input_skip", "residual"
    model.progressive_combine = "sum"  # "sum", "cat"
    model.embedding_type = "fourier"  # "fourier" or "positional"
    model.log_label = False  # embed log(label) (score_sde's NCSN++: label sigma, embeds log sigma)
    model.scale_by_sigma = False  # divide the output by the label (= sigma)
    model.center_input = False  # map x to 2x - 1 first (for data.centered=False)
    model.num_classes = 0  # > 0: class-conditional (for guidance)
    model.init_scale = 0.0
    model.parameterization = "eps"  # what the network predicts: "score", "eps", "x0" or "edm" (preconditioned)
    model.time_label = "t"  # what the network is told: "t", "sigma", "log_sigma", "999t", "index"
    model.scale_input = True  # feed x / sqrt(alpha^2 sigma_data^2 + sigma^2)
    model.sigma_data = 0.5
    model.ema_decay = 0.999

    config.training = training = ml_collections.ConfigDict()
    training.batch_size = 256
    training.n_steps = 5000
    training.eps = 1e-5  # smallest diffusion time seen in training
    training.weighting = "sigma2"  # "sigma2", "likelihood" or "edm" (uses model.sigma_data)
    training.time_distribution = "uniform"  # "uniform" in [eps, T], or "log_normal" in sigma / alpha (EDM)
    training.p_mean = -1.2  # log_normal: mean and std of log(sigma / alpha)
    training.p_std = 1.2
    training.reduce = "mean"  # over data dimensions: "mean" or "sum"
    training.log_freq = 100
    training.checkpoint_freq = 1000
    training.keep_checkpoints = 3
    training.meta_checkpoint_freq = 100  # preemption checkpoint (checkpoints-meta/, one kept) every this many steps (0: never)
    training.resume_from = (
        ""  # "": the newest complete checkpoint in the workdir (else a fresh start); a path: that one (must exist)
    )
    training.sample_freq = 1000  # write a picture of samples every this many steps (0: never)
    training.grad_accum = 1  # micro-batches per optimizer step and process; batch_size is split over processes x micro-batches
    training.precision = "fp32"  # "fp32", "bf16" (autocast, CPU and CUDA) or "fp16" (autocast + gradient scaler, CUDA only)
    training.compile = False  # torch.compile the network for training
    training.nonfinite = (
        "stop"  # a non-finite loss or gradient: "stop" (name the step and the last good checkpoint) or "skip" the step
    )
    training.progress = True  # progress bar with loss and steps/s (only on a terminal)
    training.tensorboard = True  # also write TensorBoard scalars when the tensorboard package is installed
    training.label_dropout = (
        0.1  # class-conditional models (model.num_classes > 0): P(label -> "no class"), for classifier-free guidance
    )

    config.distributed = distributed = ml_collections.ConfigDict()  # used under torchrun (WORLD_SIZE > 1)
    distributed.backend = "auto"  # "auto" (NCCL on CUDA, gloo on CPU), "nccl" or "gloo"
    distributed.timeout_minutes = 30  # how long a collective waits for the other processes

    config.optim = optim = ml_collections.ConfigDict()
    optim.lr = 1e-3
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.weight_decay = 0.0
    optim.warmup = 100  # linear learning-rate warm-up steps
    optim.grad_clip = 1.0  # max gradient norm (0: no clipping)

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.sampler = "euler_maruyama"  # any of scoresde.samplers.available()
    sampling.steps = 1000
    sampling.eps = 1e-3
    # a name of samplers.TIME_GRIDS; "" for sample's default (samplers.default_time_grid); "tuned"
    # (ODE solvers: search_time_grid)
    sampling.time_grid = ""
    sampling.tune_samples = 256  # time_grid "tuned": starting points the search tunes on (and judges on as many others)
    sampling.tune_evaluations = 400  # time_grid "tuned": sampler runs Nelder-Mead may spend
    # Options of each sampler, in a section of its own with the defaults of its loop's signature
    # (scoresde.samplers.REGISTRY): --config.sampling.predictor_corrector.snr=0.2. Only the section of
    # the chosen sampler is used; a sampler registered before get_config() runs gets one too.
    for name, info in samplers.REGISTRY.items():
        sampling[name] = ml_collections.ConfigDict(info.option_defaults())
    sampling.denoise = True  # a final Tweedie denoising step
    # The first score evaluation replaced by the exact score of N(mean, std^2) with the training data's
    # mean and std (AFS; one evaluation fewer, samplers.AnalyticFirstStep); sample, eval and training samples.
    sampling.analytic_first_step = False
    sampling.n_samples = 1000
    sampling.batch_size = 1000
    sampling.use_ema = True
    sampling.checkpoint = ""  # a checkpoint directory (default: the latest), or a published model file:
    # a score_sde_pytorch .pth or an EDM .pkl (scoresde.cli.published; sample, eval and the benchmark)
    sampling.checkpoint_settings = ""  # a score_sde_pytorch .pth: JSON {"model", "data", "training"} of its run
    sampling.seed = 0

    config.benchmark = benchmark = ml_collections.ConfigDict()  # --mode benchmark (scoresde.eval.benchmark)
    benchmark.target = "oracle"  # "oracle" (exact-score Gaussian mixtures) or "checkpoint" (the model in --workdir)
    benchmark.problems = ("ring",)  # "ring" (2-D), "stiff64" (64-D)
    benchmark.sdes = ("vesde", "vpsde")  # each problem under each SDE (parameters from config.sde)
    benchmark.samplers = ("ddim", "heun", "dpmpp_2m", "dpmpp_3m", "ipndm", "unipc")
    benchmark.budgets = (10, 20, 50)  # NFE budgets, final denoising evaluation included
    benchmark.seeds = 3  # runs per cell (initial noise and sampler noise), for confidence intervals
    benchmark.n_samples = 1000
    benchmark.plot_budget = 20  # the budget of the samples scatter
    benchmark.reference_rtol = 1e-5  # checkpoint: tolerance of the adaptive reference flow (flow_rms)
    benchmark.inception_weights = (
        ""  # checkpoint: path of pytorch-fid's pt_inception-2015-12-05-6726825d.pth (never downloaded) -> FID and IS
    )
    benchmark.inception_sha256 = (
        ""  # its expected SHA-256 ("" = the published digest, scoresde.eval.inception.FID_WEIGHTS_SHA256)
    )
    benchmark.progress = True

    config.likelihood = likelihood = ml_collections.ConfigDict()  # --mode likelihood (scoresde.likelihood)
    likelihood.split = "test"  # "test" or "train"
    likelihood.n_examples = 0  # evaluate the first this many examples of the split (0: all)
    likelihood.batch_size = 256
    likelihood.divergence = "auto"  # "auto" (exact up to 64 dimensions), "exact" or "hutchinson"
    likelihood.n_probes = 1  # hutchinson: probes per example (> 1 gives a standard error per example)
    likelihood.probe = "gaussian"  # hutchinson: "gaussian" or "rademacher"
    likelihood.method = "dopri5"  # "dopri5" (per-sample steps), "torchdiffeq", "scipy" (RK45, score_sde's), "rk4"
    likelihood.steps = 100  # rk4 only
    likelihood.rtol = 1e-5
    likelihood.atol = 1e-5
    likelihood.eps = 1e-5  # the start time of the ODE
    likelihood.n_dequantize = 1  # images: uniform dequantization draws per example (bits/dim averaged over them)
    likelihood.use_ema = True
    likelihood.seed = 0

    config.classifier = classifier = (
        ml_collections.ConfigDict()
    )  # --mode train_classifier: noise-conditional, for classifier guidance
    classifier.width = 256
    classifier.depth = 3
    classifier.embed_dim = 128
    classifier.fourier_scale = 16.0
    classifier.dropout = 0.0
    classifier.n_steps = 3000
    classifier.batch_size = 256
    classifier.lr = 1e-3
    classifier.ema_decay = 0.999
    classifier.checkpoint_freq = 1000

    config.controllable = controllable = (
        ml_collections.ConfigDict()
    )  # --mode inpaint / colorize / conditional (scoresde.controllable)
    controllable.mask = "left_half"  # inpaint: left_half, right_half, top_half, bottom_half, center, random
    controllable.mask_fraction = 0.5  # inpaint, mask "random": the fraction of unknown pixels
    controllable.n_images = 16  # inpaint, colorize: the first this many test images
    # inpaint, colorize: "replacement" (config.sampling's sampler) or "smc" (ancestral, exact as particles grow)
    controllable.method = "replacement"
    controllable.particles = 64  # inpaint, colorize, method "smc": particles per image
    controllable.noise = ""  # inpaint (replacement), colorize: "fresh", "fixed" or "" (fixed for ODE samplers, else fresh)
    controllable.guidance = "free"  # conditional: "free" (classifier-free; needs model.num_classes > 0) or "classifier"
    controllable.scales = "1,2,4"  # conditional: comma-separated guidance scales (1 = the conditional score, 0 = unconditional)
    controllable.n_per_class = 50  # conditional: samples per class and scale
    controllable.classifier_workdir = ""  # conditional, guidance "classifier": where --mode train_classifier ran ("" = workdir)

    config.eval = evaluation = ml_collections.ConfigDict()  # --mode eval (scoresde/cli/eval.py), and the quick quality figure
    evaluation.n_projections = 512  # sliced Wasserstein directions
    evaluation.checkpoints = "latest"  # "latest", "all", "follow" (each new one while training runs) or steps "1000,2000"
    evaluation.samplers = ()  # sampler specs "name[@grid][:key=value,...]" (as config.benchmark's); () = config.sampling's
    evaluation.num_samples = 50000  # samples per checkpoint, sampler and seed range (the papers' FID protocol)
    evaluation.shard_size = 1000  # samples per shard file: the unit of resuming and of splitting over processes
    evaluation.runs = 1  # seed ranges: run r draws samples from seeds first_seed + r * num_samples + i (mean, spread, best)
    evaluation.first_seed = 0
    evaluation.reference = "train"  # "train" / "test" (statistics computed once, cached) or a statistics .npz file
    evaluation.reference_examples = 0  # examples of the split the statistics use (0: all)
    evaluation.kernel_examples = 10000  # feature rows kept (samples and reference) for KID and precision / recall
    evaluation.feature_batch = 250  # images per forward pass of the feature network
    evaluation.stats_dir = ""  # where reference statistics are cached ("" = $XDG_CACHE_HOME/scoresde/statistics)
    evaluation.follow_timeout = 3600.0  # checkpoints="follow": stop after this many seconds without a new checkpoint
    evaluation.poll_seconds = 30.0  # checkpoints="follow": how often to look for one
    evaluation.class_labels = "balanced"  # class-conditional networks: sample i of class i mod num_classes; "none": no class
    evaluation.bpd = False  # also the likelihood of config.likelihood's split (its solver, its n_dequantize draws), sharded
    evaluation.bpd_shard = 512  # examples per likelihood shard (a multiple of likelihood.batch_size keeps unsharded values)
    return config
