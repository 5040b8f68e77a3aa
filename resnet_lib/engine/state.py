"""Where a run stands (its tallies, its curve, its position) and where each stretch of it trained (its pieces),
stored in each checkpoint as plain numbers."""
from __future__ import annotations

from dataclasses import dataclass, field

HISTORY_KEYS = ("iteration", "lr", "train_loss", "train_err", "test_loss", "test_err")


@dataclass
class Tally:
    """Training loss and errors summed over the steps since the last reset."""
    loss_sum: float = 0.0  # sum over images of the per-image loss
    wrong: int = 0
    seen: int = 0

    def add(self, mean_loss: float, wrong: int, n: int) -> None:
        self.loss_sum += mean_loss * n
        self.wrong += wrong
        self.seen += n


@dataclass
class RunState:
    """Where a run stands; stored in each checkpoint as plain numbers and lists."""
    iteration: int = 0               # SGD steps done
    epoch: int = 0
    batch: int = 0                   # next batch of ``epoch``
    wall: float = 0.0                # seconds of training so far, over every resumed piece
    since_eval: Tally = field(default_factory=Tally)   # for the curve's training loss and error
    since_warm: Tally = field(default_factory=Tally)   # for the warm-up rule's training error
    history: dict = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    pieces: list = field(default_factory=list)  # where each stretch of iterations trained (see open_piece)

    @classmethod
    def from_dict(cls, d: dict) -> "RunState":
        return cls(**{**d, "since_eval": Tally(**d["since_eval"]), "since_warm": Tally(**d["since_warm"])})


def record_point(st: RunState, it: int, lr: float, ev: dict) -> None:
    """Append a curve point: the training tallies since the last point and the evaluation ``ev``."""
    tally = st.since_eval
    for k, v in (("iteration", it), ("lr", lr), ("train_loss", tally.loss_sum / tally.seen),
                 ("train_err", tally.wrong / tally.seen), ("test_loss", ev["loss"]), ("test_err", ev["err"])):
        st.history[k].append(v)
    st.since_eval = Tally()


def open_piece(st: RunState, device: str, since_utc: str, torch_version: str | None = None,
               git: str | None = None, precision: str | None = None) -> dict:
    """The stretch of iterations that training from here on ``device`` adds to: the last one when it ended
    here with the same device, torch, code and precision, else a new one. A piece is ``{"device", "torch", "git",
    "precision", "start", "end", "wall_s", "since_utc"}`` (iterations start..end, seconds of training), so a run
    continued on another machine says which part trained where, with which code and in which precision.
    A state saved before pieces were kept gets one piece of unknown device (None) for what it had trained."""
    if not st.pieces and st.iteration:
        st.pieces.append({"device": None, "torch": None, "git": None, "start": 0, "end": st.iteration,
                          "wall_s": round(st.wall, 2), "since_utc": None})
    last = st.pieces[-1] if st.pieces else None
    if last is not None and (last["device"], last["torch"], last.get("git"), last.get("precision"), last["end"]) \
            == (device, torch_version, git, precision, st.iteration):
        return last
    st.pieces.append({"device": device, "torch": torch_version, "git": git, "precision": precision,
                      "start": st.iteration, "end": st.iteration, "wall_s": 0.0, "since_utc": since_utc})
    return st.pieces[-1]


def resolve_pieces(pieces: list | None, calls: list[dict]) -> list[dict]:
    """A run's pieces (``engine.state.open_piece``), where one of unknown device (trained before pieces were
    kept) takes the device of the campaign's ``calls`` that ran before the call opening the next piece, when
    those calls all ran on one device (``device_from`` then says so)."""
    out = []
    for i, p in enumerate(pieces or []):
        p = dict(p)
        until = next((q["since_utc"] for q in pieces[i + 1:] if q.get("since_utc")), None)
        if p["device"] is None and until is not None:
            before = sorted((c for c in calls if c["started_utc"] <= until), key=lambda c: c["started_utc"])
            devices = {c["device"] for c in before[:-1]}  # the last of them opened the next piece
            torches = {c.get("torch") for c in before[:-1]}
            if len(devices) == 1:
                p["device"], p["device_from"] = devices.pop(), "the campaign's calls log"
                p["torch"] = torches.pop() if len(torches) == 1 else None
        out.append(p)
    return out


def device_names(pieces: list[dict], cut: int | None = None) -> str:
    """The devices ``pieces`` trained on (those starting before ``cut``), short names ("NVIDIA " dropped), sorted
    and joined by " + " when a run moved; a piece with no device is an "unrecorded device"; empty with no pieces."""
    return " + ".join(sorted({(p.get("device") or "unrecorded device").replace("NVIDIA ", "") for p in pieces
                              if cut is None or p["start"] < cut}))


def trained_on(pieces: list[dict], device: str | None) -> str | None:
    """Where a run trained: its one device, or each device with its share of the iterations."""
    devices = [p["device"] for p in pieces]
    if len(set(devices)) <= 1:
        return devices[0] if devices and devices[0] else device
    return " + ".join(f"{p['device'] or 'unrecorded device'}{f' (torch {t})' if (t := p.get('torch')) else ''} "
                      f"for iterations {p['start']:,}-{p['end']:,}" for p in pieces)


def precision_of(pieces: list[dict], precision: str | None) -> str | None:
    """A run's precision: ``precision`` (the last piece's) when every piece that recorded one agrees, else each
    with its iterations."""
    if len({p["precision"] for p in pieces if p.get("precision")}) <= 1:
        return precision
    return " + ".join(f"{p.get('precision') or 'unrecorded precision'} for iterations {p['start']:,}-{p['end']:,}"
                      for p in pieces)
