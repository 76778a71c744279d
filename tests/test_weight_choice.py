"""The sweep's rule for a correction's weight, with and without the cap on validation relevance."""

import pytest

from xaijax.corrections import weight_choice


def row(weight, validation_swapped_f1, validation_relevance):
  return {
    'weight': weight,
    'validation_swapped_f1': validation_swapped_f1,
    'validation_relevance_in_overlay': validation_relevance,
  }


# The fine-tuned λ sweep's shape: every weight alike on F1, the relevance falling with λ.
ALIKE = [row(1.0, 0.750, 0.14), row(5.0, 0.745, 0.10), row(20.0, 0.748, 0.09)]


def test_f1_alone_takes_the_smallest_weight_within_the_tie():
  assert weight_choice.choose_weight(ALIKE) == 1.0
  clear_winner = [row(1.0, 0.70, 0.14), row(5.0, 0.72, 0.10), row(20.0, 0.75, 0.09)]
  assert weight_choice.choose_weight(clear_winner) == 20.0


def test_the_cap_leaves_out_weights_whose_heatmaps_sit_on_the_overlay():
  assert weight_choice.choose_weight(ALIKE, max_validation_relevance=0.107) == 5.0
  assert weight_choice.choose_weight(ALIKE, max_validation_relevance=0.095) == 20.0
  # The best F1 among those allowed, not overall: λ 1 scores best but is left out.
  spread = [row(1.0, 0.80, 0.14), row(5.0, 0.70, 0.10), row(20.0, 0.74, 0.09)]
  assert weight_choice.choose_weight(spread, max_validation_relevance=0.12) == 20.0


def test_no_weight_under_the_cap_chooses_none():
  assert weight_choice.choose_weight(ALIKE, max_validation_relevance=0.05) is None


def test_the_cap_without_validation_relevance_says_what_to_do():
  old = [row(1.0, 0.75, None), row(5.0, 0.74, 0.10)]
  assert weight_choice.choose_weight(old) == 1.0
  with pytest.raises(ValueError, match='delete it and rerun'):
    weight_choice.choose_weight(old, max_validation_relevance=0.2)


def test_validation_relevance_reads_results_json():
  share = {'mean': 0.12, 'std': 0.01, 'per_seed': [0.11, 0.13]}
  assert weight_choice.validation_relevance({'validation_relevance_mass_in_overlay': share}) == 0.12
  assert weight_choice.validation_relevance({'validation_relevance_mass_in_overlay': None}) is None
  assert weight_choice.validation_relevance({}) is None
