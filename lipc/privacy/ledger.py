"""The privacy ledger of a run: everything needed to check the (ε, δ) it reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lipc.privacy.accounting import NEIGHBORING_RELATION


@dataclass
class PrivacyLedger:
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
    epsilon_spent: float = 0.0
    neighboring_relation: str = NEIGHBORING_RELATION
    tensors: dict[str, dict[str, float]] = field(default_factory=dict)
    epsilon_after_epoch: list[float] = field(default_factory=list)
    preprocessing: str = ""
    # False when preprocessing read statistics of the training data (allow_data_statistics).
    preprocessing_covered_by_guarantee: bool = True

    def to_dict(self) -> dict:
        return asdict(self)
