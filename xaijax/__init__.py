"""xaijax: find, measure and remove shortcut features with LRP in JAX/Flax."""
