"""PyTorch and Zennit as outside references: the same MobileNet, the same weights, the same LRP
composites. Used by the Zennit cross-check test and the benchmarks, never by the library itself;
torch and zennit are optional (`pip install -r requirements-reference.txt`) and imported only
here, only when called.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types

import numpy as np

from xaijax.models.mobilenet import BLOCKS


def import_torch():
  """The torch module, or an exit naming the requirements file that installs it."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise SystemExit(
      'This reference needs PyTorch, an optional dependency: '
      'pip install -r requirements-reference.txt'
    ) from error
  return torch


def import_zennit():
  """(torch, zennit) modules; raises ImportError when either is missing.

  Zennit imports torchvision only for its ResNet canonizers. Where torchvision is absent or
  cannot load (a CPU torch wheel without a matching torchvision), the two classes it names are
  stubbed; the composites used here never touch them.
  """
  import torch  # pylint: disable=import-outside-toplevel

  try:
    # Imported for its side effect only (a linter's autofix once deleted a plain import here).
    importlib.import_module('torchvision.models.resnet')
  except Exception:  # pylint: disable=broad-except
    resnet = types.ModuleType('torchvision.models.resnet')
    resnet.Bottleneck = type('Bottleneck', (), {})
    resnet.BasicBlock = type('BasicBlock', (), {})
    models = types.ModuleType('torchvision.models')
    models.resnet = resnet
    package = types.ModuleType('torchvision')
    package.models = models
    sys.modules.update(
      {'torchvision': package, 'torchvision.models': models, 'torchvision.models.resnet': resnet}
    )
  import zennit.attribution  # pylint: disable=import-outside-toplevel,unused-import
  import zennit.canonizers  # pylint: disable=import-outside-toplevel,unused-import
  import zennit.composites  # pylint: disable=import-outside-toplevel

  return torch, zennit


def torch_mobilenet(torch, num_classes: int, alpha: float, channels: int, resolution: int):
  """MobileNet v1 as `xaijax.models.mobilenet.MobileNet` builds it (Keras' padding and BatchNorm
  settings), in training mode: call `.eval()` for inference and LRP.

  The first convolution pads 'SAME' for `resolution`: inside the Conv2d where that padding is
  symmetric (odd sizes), else by a separate bottom/right padding module. Zennit's input-layer
  rules (z-box, flat) count the zeros of a separate padding module as inputs, Flax's padding
  inside the convolution as nothing; so only symmetric padding compares exactly for them.
  """
  nn = torch.nn

  class PadBottomRight(nn.Module):
    def forward(self, x):
      return nn.functional.pad(x, (0, 1, 0, 1))

  width = int(32 * alpha)
  total_pad = max((-(-resolution // 2) - 1) * 2 + 3 - resolution, 0)
  if total_pad % 2 == 0:
    layers = [nn.Conv2d(channels, width, 3, stride=2, padding=total_pad // 2, bias=False)]
  else:
    layers = [PadBottomRight(), nn.Conv2d(channels, width, 3, stride=2, bias=False)]
  # Keras' BatchNorm momentum 0.99 is PyTorch's 0.01 (the weight of the new batch).
  batch_norm = functools.partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
  layers += [batch_norm(width), nn.ReLU6()]
  for filters, stride in BLOCKS:
    if stride == 2:
      layers += [PadBottomRight(), nn.Conv2d(width, width, 3, stride=2, groups=width, bias=False)]
    else:
      layers += [nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)]
    out = int(filters * alpha)
    layers += [
      batch_norm(width),
      nn.ReLU6(),
      nn.Conv2d(width, out, 1, bias=False),
      batch_norm(out),
      nn.ReLU6(),
    ]
    width = out
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(1e-3), nn.Linear(width, num_classes)]
  return nn.Sequential(*layers)


def load_flax_weights(torch, torch_model, variables) -> None:
  """Copy Flax MobileNet variables into `torch_mobilenet` (layers matched in call order)."""
  params, stats = variables['params'], variables['batch_stats']
  names = ['conv1']
  for block in range(1, len(BLOCKS) + 1):
    names += [f'conv_dw_{block}', f'conv_pw_{block}']
  convs = [m for m in torch_model if isinstance(m, torch.nn.Conv2d)]
  norms = [m for m in torch_model if isinstance(m, torch.nn.BatchNorm2d)]
  dtype = next(torch_model.parameters()).dtype

  def tensor(array):
    return torch.tensor(np.asarray(array), dtype=dtype)

  with torch.no_grad():
    for name, conv, norm in zip(names, convs, norms, strict=True):
      conv.weight.copy_(tensor(np.transpose(np.asarray(params[name]['kernel']), (3, 2, 0, 1))))
      bn_params, bn_stats = params[f'{name}_bn'], stats[f'{name}_bn']
      norm.weight.copy_(tensor(bn_params['scale']))
      norm.bias.copy_(tensor(bn_params['bias']))
      norm.running_mean.copy_(tensor(bn_stats['mean']))
      norm.running_var.copy_(tensor(bn_stats['var']))
    head = torch_model[-1]
    head.weight.copy_(tensor(np.asarray(params['conv_preds']['kernel']).T))
    head.bias.copy_(tensor(params['conv_preds']['bias']))


def zennit_composite(
  zennit,
  name: str,
  epsilon: float = 1e-6,
  stabilizer: float = 1e-6,
  low: float = -1.0,
  high: float = 1.0,
):
  """The Zennit composite matching `xaijax.lrp.composites.get(name)`, BatchNorm merged."""
  import torch  # pylint: disable=import-outside-toplevel

  composites, rules = zennit.composites, zennit.rules
  canonizers = [_exact_merge_batchnorm(torch, zennit)()]
  if name == 'epsilon':
    layer_map = composites.layer_map_base(stabilizer) + [
      (composites.Convolution, rules.Epsilon(epsilon=epsilon)),
      (torch.nn.Linear, rules.Epsilon(epsilon=epsilon)),
    ]
    return composites.LayerMapComposite(layer_map=layer_map, canonizers=canonizers)
  if name == 'epsilon_plus':
    return composites.EpsilonPlus(epsilon=epsilon, stabilizer=stabilizer, canonizers=canonizers)
  if name == 'epsilon_gamma_box':
    return composites.EpsilonGammaBox(
      low=low, high=high, epsilon=epsilon, stabilizer=stabilizer, canonizers=canonizers
    )
  if name == 'epsilon_plus_flat':
    return composites.EpsilonPlusFlat(epsilon=epsilon, stabilizer=stabilizer, canonizers=canonizers)
  if name == 'epsilon_alpha2_beta1':
    return composites.EpsilonAlpha2Beta1(
      epsilon=epsilon, stabilizer=stabilizer, canonizers=canonizers
    )
  raise ValueError(f'No Zennit counterpart for composite {name!r}.')


def _exact_merge_batchnorm(torch, zennit):
  """Zennit's SequentialMergeBatchNorm, with the BatchNorm left behind really the identity.

  Zennit 0.5.1 resets the merged BatchNorm to mean 0, var 1 but keeps its eps, so it still
  divides by sqrt(1 + eps) (zennit issue #234: torch >= 2.10 refuses eps = 0). With Keras' eps
  1e-3 that rescales MobileNet 27 times, moves ReLU6 saturation and changes the relevance;
  var = 1 - eps makes the BatchNorm the identity.
  """
  base = zennit.canonizers.SequentialMergeBatchNorm

  class ExactSequentialMergeBatchNorm(base):
    @staticmethod
    def merge_batch_norm(modules, batch_norm):
      base.merge_batch_norm(modules, batch_norm)
      batch_norm.running_var.data = torch.full_like(
        batch_norm.running_var.data, 1.0 - batch_norm.eps
      )

  return ExactSequentialMergeBatchNorm


def zennit_relevance(torch, zennit, torch_model, composite, images_nhwc, target):
  """Relevance [N, H, W, C] from Zennit, starting from logit * one_hot(target) as xaijax does."""
  x = torch.tensor(
    np.transpose(np.asarray(images_nhwc), (0, 3, 1, 2)),
    dtype=next(torch_model.parameters()).dtype,
    requires_grad=True,
  )
  one_hot = torch.nn.functional.one_hot(
    torch.as_tensor(np.asarray(target), dtype=torch.long), torch_model[-1].out_features
  ).to(x.dtype)
  with zennit.attribution.Gradient(model=torch_model, composite=composite) as attributor:
    _, relevance = attributor(x, lambda logits: logits * one_hot)
  return np.transpose(relevance.detach().numpy(), (0, 2, 3, 1))
