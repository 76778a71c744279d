"""Round trips of train-state pytrees through orbax, and which checkpoints are kept."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xaijax import checkpoints


def _state(offset: float):
  params = {'dense': {'kernel': jnp.arange(6.0).reshape(2, 3) + offset, 'bias': jnp.zeros(3)}}
  optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
  return {
    'params': params,
    'opt_state': optimizer.init(params),
    'rng': jax.random.PRNGKey(int(offset)),
    'early_stopping': {'active': jnp.array([True, False]), 'best_epoch': jnp.array([3, 1])},
  }


def _assert_trees_equal(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert np.asarray(a).dtype == np.asarray(e).dtype
    np.testing.assert_array_equal(a, e)


def test_periodic_checkpoints_keep_the_last_few_and_restore_exactly(tmp_path):
  with checkpoints.PeriodicCheckpoints(str(tmp_path / 'ckpt'), keep=2) as store:
    assert store.latest_epoch() is None
    for epoch in (2, 4, 6):
      store.save(epoch, _state(epoch))
    store.wait()
    assert store.epochs() == [4, 6]
    assert store.latest_epoch() == 6
  # A new manager (a restarted process) sees the same checkpoints.
  with checkpoints.PeriodicCheckpoints(str(tmp_path / 'ckpt'), keep=2) as store:
    assert store.latest_epoch() == 6
    restored = store.restore(4, like=_state(0))
  _assert_trees_equal(restored, _state(4))
  assert isinstance(restored['opt_state'], type(_state(0)['opt_state']))


def test_restore_places_arrays_like_the_target(tmp_path):
  device = jax.devices()[0]
  like = jax.device_put(_state(0), device)
  with checkpoints.PeriodicCheckpoints(str(tmp_path)) as store:
    store.save(1, _state(1))
    store.wait()
    restored = store.restore(1, like=like)
  for leaf in jax.tree.leaves(restored):
    assert isinstance(leaf, jax.Array) and leaf.devices() == {device}


def test_save_and_load_pytree(tmp_path):
  tree = {
    'params': {'w': np.arange(4, dtype=np.float32)},
    'batch_stats': {'mean': np.ones(2, np.float32)},
  }
  path = str(tmp_path / 'best')
  assert not checkpoints.pytree_exists(path)
  checkpoints.save_pytree(path, tree)
  assert checkpoints.pytree_exists(path)
  _assert_trees_equal(checkpoints.load_pytree(path), tree)
  _assert_trees_equal(checkpoints.load_pytree(path, like=tree), tree)
  # Saving again over a finished tree replaces it.
  tree['params']['w'] = tree['params']['w'] * 2
  checkpoints.save_pytree(path, tree)
  _assert_trees_equal(checkpoints.load_pytree(path), tree)


def test_a_folder_that_is_no_checkpoint_does_not_count(tmp_path):
  os.makedirs(tmp_path / 'half_written')
  assert not checkpoints.pytree_exists(str(tmp_path / 'half_written'))
