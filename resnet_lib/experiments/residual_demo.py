"""Small experiments behind notebook 01 (Sec. 1, 2 and 3.1 of the paper): why residual learning helps.

- The degradation problem in miniature (Sec. 1, Fig. 1): plain and residual stacks of growing depth,
  trained briefly on a small real task (CIFAR-10 downsampled to 8x8, a few thousand images). MLP stacks
  stand in for the paper's conv nets so that a sweep over depths takes a minute on two CPU cores.
- The identity argument (Sec. 3.1): a residual block whose branch is zero is the identity; a deep stack
  asked to learn y = x, plain against residual.
- (Signal and gradient flow at initialisation lives in ``signal_flow``.)
- Highway networks (Sec. 2, "Shortcut Connections"): y = T(x) H(x) + (1 - T(x)) x with a learned gate.
- The residual-vector idea of Sec. 2 ("Residual Representations"): a two-grid solver of a 1-D Poisson
  problem, which converges fast because its coarse level solves for the residual.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.cifar import load_cifar10, stratified_indices
from ..models.blocks import BasicBlock

BLOCKS = ("plain", "residual", "highway")


@contextmanager
def one_thread():
    """Run tiny models on one CPU thread: their matmuls are too small to share, and on a loaded machine
    (several jobs on two cores) the thread hand-offs made a step 50x slower in our measurements."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- toy stacks

class MLPBlock(nn.Module):
    """Two fully-connected layers with BN, the MLP twin of the basic block (Fig. 2 with fc layers, which the
    paper notes applies too: "the above notations are about fully-connected layers for simplicity")."""

    def __init__(self, width: int, residual: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(width, width, bias=False)
        self.bn1 = nn.BatchNorm1d(width)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(width, width, bias=False)
        self.bn2 = nn.BatchNorm1d(width)
        self.residual = residual

    def forward(self, x):
        out = self.fc1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.fc2(out)
        out = self.bn2(out)
        if self.residual:
            out = out + x  # Eq. (1): y = F(x, {W_i}) + x
        out = self.relu(out)
        return out


class HighwayBlock(nn.Module):
    """A highway layer (Srivastava et al. 2015, the paper's [41, 42]): y = T(x) * H(x) + (1 - T(x)) * x.

    H is the same two-layer branch as the residual block's F; the gate T(x) = sigmoid(W_T x + b_T) is here one
    more layer of the same size, so *this* highway block has about 50% more parameters than a residual one
    (a property of this gate design: highway layers with one gate per layer, or cheaper gates, cost otherwise).
    ``gate_bias`` sets b_T at initialisation: very negative opens the shortcut (T ~ 0: y ~ x), very positive
    "closes" it (T ~ 1: y ~ H(x), a plain block, Sec. 2). ``conv=True`` uses 3x3 convs instead of fc layers.
    """

    def __init__(self, width: int, gate_bias: float = -1.0, conv: bool = False):
        super().__init__()
        layer = (lambda: nn.Conv2d(width, width, 3, padding=1, bias=False)) if conv else \
            (lambda: nn.Linear(width, width, bias=False))
        norm = nn.BatchNorm2d if conv else nn.BatchNorm1d
        self.fc1 = layer()
        self.bn1 = norm(width)
        self.relu = nn.ReLU()
        self.fc2 = layer()
        self.bn2 = norm(width)
        self.gate = nn.Conv2d(width, width, 3, padding=1) if conv else nn.Linear(width, width)
        nn.init.constant_(self.gate.bias, gate_bias)

    def forward(self, x):
        h = self.fc1(x)
        h = self.bn1(h)
        h = self.relu(h)
        h = self.fc2(h)
        h = self.bn2(h)
        h = self.relu(h)
        t = torch.sigmoid(self.gate(x))
        self.last_gate = t.detach().mean()
        return t * h + (1 - t) * x


class ToyMLP(nn.Module):
    """``depth`` weight layers: an fc stem, (depth-2)/2 two-layer blocks, an fc classifier (the 6n+2 idea)."""

    def __init__(self, depth: int, width: int = 64, block: str = "residual", in_features: int = 192,
                 num_classes: int = 10, gate_bias: float = -1.0):
        super().__init__()
        if depth < 2 or depth % 2:
            raise ValueError(f"depth {depth!r} must be an even number >= 2 (stem + 2 layers per block + classifier)")
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; use one of {BLOCKS}")
        self.stem = nn.Sequential(nn.Linear(in_features, width, bias=False), nn.BatchNorm1d(width), nn.ReLU())
        make = (lambda: HighwayBlock(width, gate_bias)) if block == "highway" else \
            (lambda: MLPBlock(width, residual=block == "residual"))
        self.blocks = nn.Sequential(*[make() for _ in range((depth - 2) // 2)])
        self.fc = nn.Linear(width, num_classes)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and not name.endswith("gate"):  # gates keep PyTorch's small default init
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")  # Sec. 3.4: init of [13]

    def forward(self, x):
        x = self.stem(x)
        x = self.blocks(x)
        x = self.fc(x)
        return x


def zero_branch(block: MLPBlock | nn.Module) -> nn.Module:
    """Set the last BN's gamma and beta of a residual branch to zero: F(x) = 0, so y = relu(x) (Sec. 3.1)."""
    bn = block.bn3 if hasattr(block, "bn3") else block.bn2
    with torch.no_grad():
        bn.weight.zero_()
        bn.bias.zero_()
    return block


# ----------------------------------------------------------------------------- data

def small_cifar(n_train: int = 5000, size: int = 8, seed: int = 0, data=None):
    """A stratified CIFAR-10 training subset, area-downsampled to ``size`` x ``size``, flattened and
    standardised per feature: ``(X, y)`` with X of shape (n_train, 3*size*size)."""
    if 32 % size:
        raise ValueError(f"size {size} must divide 32 (e.g. 8 or 16)")
    data = data or load_cifar10()
    idx = stratified_indices(data.y_train, n_train, seed=seed)
    x = data.x_train[idx].float().div_(255)
    x = nn.functional.avg_pool2d(x, 32 // size).flatten(1)
    x = (x - x.mean(0)) / x.std(0)
    return x, data.y_train[idx].clone()


# ----------------------------------------------------------------------------- training

@dataclass(frozen=True)
class ToyConfig:
    """Training of the toy stacks: SGD with momentum as in Sec. 3.4, shortened to a few epochs."""
    depths: tuple = (4, 10, 20, 40)  # weight layers per stack
    width: int = 64                  # units per hidden layer
    epochs: int = 30                 # passes over the subset
    batch_size: int = 128            # the paper's CIFAR mini-batch (Sec. 4.2)
    lr: float = 0.005                # constant; the paper's 0.1 made even the residual MLPs of 40 layers stall
    momentum: float = 0.9            # Sec. 3.4
    weight_decay: float = 0.0        # off: we look at training error, not generalisation
    seed: int = 0


@torch.no_grad()
def error_rate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(X).argmax(1) != y).float().mean().item()


def train_toy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, cfg: ToyConfig = ToyConfig()) -> list[float]:
    """Train on (X, y); return the training error (%) after each epoch (eval mode, whole set)."""
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    curve = []
    for _ in range(cfg.epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=g).split(cfg.batch_size):
            if len(idx) < 2:  # BN needs two samples
                continue
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        curve.append(100 * error_rate(model, X, y))
    return curve


def degradation_sweep(X, y, cfg: ToyConfig = ToyConfig(), blocks=("plain", "residual"), progress: bool = True,
                      **model_kw) -> list[dict]:
    """Train every (block, depth) stack; one record each: ``block, depth, params, curve, final`` (train err %)."""
    runs = []
    jobs = [(b, d) for d in cfg.depths for b in blocks]
    for b, d in tqdm(jobs, desc="stacks", disable=not progress):
        torch.manual_seed(cfg.seed)
        net = ToyMLP(d, cfg.width, b, in_features=X.shape[1], num_classes=int(y.max()) + 1, **model_kw)
        with one_thread():
            curve = train_toy(net, X, y, cfg)
        runs.append({"block": b, "depth": d, "params": sum(p.numel() for p in net.parameters()),
                     "curve": curve, "final": curve[-1]})
    return runs


# ----------------------------------------------------------------------------- the identity argument

class BlockStack(nn.Sequential):
    """``n_blocks`` blocks of width ``width`` and nothing else, so that y = x is exactly representable."""

    def __init__(self, n_blocks: int, width: int, block: str = "residual"):
        super().__init__(*[HighwayBlock(width) if block == "highway" else MLPBlock(width, block == "residual")
                           for _ in range(n_blocks)])


def learn_identity(n_blocks: int = 10, width: int = 32, block: str = "residual", steps: int = 600,
                   lr: float = 0.01, batch_size: int = 128, seed: int = 0) -> list[float]:
    """Train a stack of ``2*n_blocks`` layers to output its input (Sec. 3.1's thought experiment); return the
    mean squared error per step. Inputs are |N(0,1)| so that the final ReLU does not forbid the identity;
    predicting their mean alone scores 1 - 2/pi = 0.36. Adam rather than SGD (a departure, for speed: with
    SGD the same contrast appears, more slowly)."""
    torch.manual_seed(seed)
    net = BlockStack(n_blocks, width, block)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    with one_thread():
        for _ in range(steps):
            x = torch.randn(batch_size, width).abs()
            loss = nn.functional.mse_loss(net(x), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


# ----------------------------------------------------------------------------- highway

def gate_cost(width: int = 64, conv: bool = True) -> dict:
    """Parameters of one residual block and one highway block of the same width; the identity shortcut's
    own cost is zero (Sec. 3.2: it "introduces neither extra parameter nor computation complexity")."""
    count = lambda m: sum(p.numel() for p in m.parameters())
    if conv:
        res = count(BasicBlock(width, width))
    else:
        res = count(MLPBlock(width))
    hw = count(HighwayBlock(width, conv=conv))
    return {"residual_block": res, "highway_block": hw, "shortcut_params": 0, "gate_params": hw - res,
            "extra_fraction": (hw - res) / res}


def mean_gate(model: nn.Module, X: torch.Tensor) -> float:
    """The average gate value T(x) over the highway blocks of ``model`` on inputs ``X`` (1 = shortcut closed)."""
    gates = [m for m in model.modules() if isinstance(m, HighwayBlock)]
    if not gates:
        raise ValueError("the model has no HighwayBlock")
    model.eval()
    with torch.no_grad():
        model(X)
    return float(torch.stack([g.last_gate for g in gates]).mean())


def highway_sweep(X, y, cfg: ToyConfig = ToyConfig(), depth: int = 20, gate_biases=(-3.0, 0.0, 3.0),
                  progress: bool = True) -> list[dict]:
    """Train highway stacks of one depth whose gates start open (negative bias) to closed (positive);
    one record each with the final training error (%) and the mean gate value after training."""
    runs = []
    for b in tqdm(gate_biases, desc="gate biases", disable=not progress):
        torch.manual_seed(cfg.seed)
        net = ToyMLP(depth, cfg.width, "highway", in_features=X.shape[1], num_classes=int(y.max()) + 1,
                     gate_bias=b)
        with one_thread():
            gate0 = mean_gate(net, X)
            curve = train_toy(net, X, y, cfg)
            gate1 = mean_gate(net, X)
        runs.append({"block": "highway", "depth": depth, "gate_bias": b, "gate_init": gate0, "gate_final": gate1,
                     "params": sum(p.numel() for p in net.parameters()), "curve": curve, "final": curve[-1]})
    return runs


# ----------------------------------------------------------------------------- residual vectors

def poisson_1d(n: int) -> np.ndarray:
    """The (n x n) matrix of -u'' = f on n interior points of [0, 1], Dirichlet ends, h = 1/(n+1)."""
    h = 1.0 / (n + 1)
    return (np.diag(2 * np.ones(n)) - np.diag(np.ones(n - 1), 1) - np.diag(np.ones(n - 1), -1)) / h**2


def _jacobi(A, b, u, sweeps: int, omega: float = 2 / 3):
    d = np.diag(A)
    for _ in range(sweeps):
        u = u + omega * (b - A @ u) / d
    return u


def _restrict(r):  # full weighting onto the coarse grid (every other interior point)
    return 0.25 * r[:-2:2] + 0.5 * r[1:-1:2] + 0.25 * r[2::2]


def _prolong(e, n):  # linear interpolation back to the fine grid
    out = np.zeros(n)
    out[1::2] = e
    padded = np.concatenate([[0.0], e, [0.0]])
    out[0::2] = 0.5 * (padded[:-1] + padded[1:])
    return out


def multigrid_demo(n: int = 127, sweeps: int = 60, smooth: int = 2, seed: int = 0) -> dict:
    """Relative residual ||b - A u|| / ||b|| against smoothing sweeps for (a) weighted Jacobi alone and
    (b) a two-grid solver: smooth, then solve for the *residual's* correction on a coarse grid (A_c e = R r),
    add it back, smooth again. (b) needs far fewer sweeps: the coarse level works on the residual form."""
    if n % 2 == 0:
        raise ValueError(f"n must be odd (2m+1 fine points for m coarse ones), got {n}")
    rng = np.random.default_rng(seed)
    A, Ac = poisson_1d(n), poisson_1d((n - 1) // 2)
    b = rng.standard_normal(n)
    nb = np.linalg.norm(b)
    u = np.zeros(n)
    jac = [1.0]
    for _ in range(sweeps):
        u = _jacobi(A, b, u, 1)
        jac.append(np.linalg.norm(b - A @ u) / nb)
    u = np.zeros(n)
    two = [(0, 1.0)]
    done = 0
    while done < sweeps:
        u = _jacobi(A, b, u, smooth)
        r = b - A @ u
        u = u + _prolong(np.linalg.solve(Ac, _restrict(r)), n)  # the coarse level solves for the residual
        u = _jacobi(A, b, u, smooth)
        done += 2 * smooth
        two.append((done, np.linalg.norm(b - A @ u) / nb))
    return {"jacobi": jac, "two_grid_sweeps": [s for s, _ in two], "two_grid": [r for _, r in two]}


def config_dict(cfg: ToyConfig) -> dict:
    return asdict(cfg)
