"""The privacy ledger of a run: everything needed to check the (ε, δ) it reports.

The trainer writes the ledger to the run folder after every epoch, atomically and before the
weights it describes. A run killed at any point therefore leaves a ledger that counts at least
as many noisy steps as the saved weights have taken.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from lipc.privacy.accounting import ACCOUNTANT_NAMES, NEIGHBORING_RELATION
from lipc.privacy.sampling import epsilon_label


@dataclass
class PrivacyLedger:
    """Privacy record of one run; `steps_taken` counts every noisy update, empty batches included.

    `steps_discarded` counts steps whose weights were lost when a run was killed after its
    ledger was written but before its checkpoint was; they stay in `steps_taken` and in ε.
    """

    accountant: str
    sampling: str
    sampling_rate: float
    expected_batch_size: float
    dataset_size: int
    noise_multiplier: float
    noise_strategy: str
    delta: float
    target_epsilon: float
    steps_planned: int
    steps_taken: int = 0
    steps_discarded: int = 0
    epsilon_spent: float = 0.0
    neighboring_relation: str = NEIGHBORING_RELATION
    epsilon_label: str = ""
    pld_discretization: float | None = None
    tensors: dict[str, dict[str, float]] = field(default_factory=dict)
    epsilon_after_epoch: list[float] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    preprocessing: str = ""
    # False when preprocessing read statistics of the training data (allow_data_statistics).
    preprocessing_covered_by_guarantee: bool = True
    finished: bool = False

    def __post_init__(self) -> None:
        if not self.epsilon_label:
            self.epsilon_label = epsilon_label(self.sampling)

    def record_epoch(self, epoch: int, epsilon: float) -> None:
        """Record ε after `epoch`, replacing any record of that epoch or later (after a resume)."""
        self.epochs = [entry for entry in self.epochs if entry["epoch"] < epoch]
        self.epochs.append({"epoch": epoch, "steps_taken": self.steps_taken, "epsilon": epsilon})
        self.epsilon_after_epoch = [entry["epsilon"] for entry in self.epochs]
        self.epsilon_spent = epsilon

    def summary(self) -> str:
        """Describe ε, δ, the accountant, the neighbouring relation and the sampling in one line."""
        sampling = "Poisson sampling" if self.sampling == "poisson" else "shuffled fixed-size batches, NOT covered by this ε, which assumes Poisson sampling"
        return (
            f"ε = {self.epsilon_spent:.4f}, δ = {self.delta:g} ({ACCOUNTANT_NAMES[self.accountant]} accountant, "
            f"add-or-remove-one, {sampling}, q = {self.sampling_rate:.4f}, {self.steps_taken} steps, "
            f"noise multiplier {self.noise_multiplier:.4f})"
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PrivacyLedger":
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown ledger fields: {', '.join(sorted(unknown))}")
        return cls(**values)
