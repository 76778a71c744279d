"""Early stopping on a score to maximise, as a pure per-seed state (Keras `EarlyStopping` rules).

After each epoch the score improves when `score - min_delta > best`; then `best` and the best
epoch are taken from it and the wait counter goes back to 0. Otherwise the counter grows, and the
seed stops once it reaches `patience`. So a seed whose score never improves after epoch 1 stops at
epoch `1 + patience`. A stopped seed's state never changes again: under `vmap` over seeds this
is the mask that freezes it while the others go on.
"""

from __future__ import annotations

import jax.numpy as jnp


def init_early_stopping(active: bool = True) -> dict:
  """State of one seed before its first epoch; `active=False` makes a seed that never trains."""
  return {
    'active': jnp.asarray(active),
    'best_score': jnp.asarray(-jnp.inf, jnp.float32),
    'best_epoch': jnp.asarray(0, jnp.int32),
    'epochs_without_improvement': jnp.asarray(0, jnp.int32),
    'stopped_epoch': jnp.asarray(0, jnp.int32),  # 0: has not stopped
  }


def update_early_stopping(state: dict, score, epoch, *, patience: int, min_delta: float):
  """The state after `epoch` (1-based) scored `score`; returns `(state, improved)`.

  Does nothing for an inactive seed (`improved` is then False).
  """
  active = state['active']
  improved = active & (score - min_delta > state['best_score'])
  waited = jnp.where(improved, 0, state['epochs_without_improvement'] + 1)
  stops_now = active & ~improved & (waited >= patience)
  updated = {
    'active': active & ~stops_now,
    'best_score': jnp.where(improved, score, state['best_score']).astype(jnp.float32),
    'best_epoch': jnp.where(improved, epoch, state['best_epoch']).astype(jnp.int32),
    'epochs_without_improvement': jnp.where(
      active, waited, state['epochs_without_improvement']
    ).astype(jnp.int32),
    'stopped_epoch': jnp.where(stops_now, epoch, state['stopped_epoch']).astype(jnp.int32),
  }
  return updated, improved
