# A saved network runs the code it was saved with (issue 12, section 1): freshly pickled StyleGAN2 G
# and D and BigGAN G and D load and give bit-identical outputs in a fresh process in which importing the
# `training` package is impossible, and the sources a pickle embeds import nothing from `training`.

import ast
import io
import os
import pickle
import subprocess
import sys

import pytest
import torch

from training import networks_biggan
from training import networks_stylegan2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The child process: block `training` and `training.*` before unpickling, then run every network.
CHILD = r'''
import importlib.abc, pickle, sys, torch

class NoTraining(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'training' or name.startswith('training.'):
            raise ImportError(f'{name} may not be imported in this process')
        return None

sys.meta_path.insert(0, NoTraining())
try:
    import training.networks_stylegan2
except ImportError:
    pass
else:
    sys.exit('the import blocker did not block training')

with open(sys.argv[1], 'rb') as f:
    cases = pickle.load(f)
leaked = sorted(name for name in sys.modules if name == 'training' or name.startswith('training.'))
assert not leaked, f'unpickling imported {leaked}'
with torch.no_grad():
    outputs = {name: net(*args, **kwargs) for name, (net, args, kwargs) in cases.items()}
torch.save(outputs, sys.argv[2])
'''

#----------------------------------------------------------------------------
# Tiny networks of both families with non-trivial inputs: name -> (network, args, kwargs).

def make_cases():
    torch.manual_seed(0)
    G = networks_stylegan2.Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=16, img_channels=3,
        mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16))
    D = networks_stylegan2.Discriminator(c_dim=3, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
        mapping_kwargs=dict(num_layers=2))
    with torch.no_grad():
        for name, param in G.named_parameters():
            if name.endswith('noise_strength'):
                param.fill_(0.5)
        G.mapping.w_avg.normal_()
    BG = networks_biggan.Generator(z_dim=16, c_dim=3, img_resolution=16, img_channels=3, ch=2, attn_res=[8])
    BD = networks_biggan.Discriminator(c_dim=3, img_resolution=16, img_channels=3, ch=2, attn_res=[8])
    z8, z16, c = torch.randn([4, 8]), torch.randn([4, 16]), torch.eye(3)[[0, 1, 2, 0]]
    img = torch.randn([4, 3, 16, 16])
    return {
        'stylegan2_G': (G.eval(), (z8, c), dict(truncation_psi=0.7, noise_mode='const')),
        'stylegan2_D': (D.eval(), (img, c), {}),
        'biggan_G': (BG.eval(), (z16, c), {}),
        'biggan_D': (BD.eval(), (img, c), {}),
    }

#----------------------------------------------------------------------------

def test_networks_run_without_training_package(tmp_path):
    cases = make_cases()
    with open(tmp_path / 'cases.pkl', 'wb') as f:
        pickle.dump(cases, f)
    result = subprocess.run([sys.executable, '-c', CHILD, str(tmp_path / 'cases.pkl'), str(tmp_path / 'out.pt')],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = torch.load(tmp_path / 'out.pt')
    with torch.no_grad():
        for name, (net, args, kwargs) in cases.items():
            assert torch.equal(outputs[name], net(*args, **kwargs)), name

#----------------------------------------------------------------------------
# The module sources a pickle carries, read from the file itself (each persistent object's module_src).

def embedded_sources(data):
    sources = set()
    def collect(meta):
        sources.add(meta['module_src'])
    class Reader(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ('torch_utils.persistence', '_reconstruct_persistent_obj'):
                return collect
            return super().find_class(module, name)
    Reader(io.BytesIO(data)).load()
    return sources

# Top-level package names that a source imports, wherever the import statement sits.
def imported_packages(src):
    names = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add('.' if node.level else node.module.split('.')[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith('training.'):
            names.add(f'string {node.value!r}') # A name for importlib or get_obj_by_name.
    return names

@pytest.mark.parametrize('name, allowed', [
    ('stylegan2_G', {'numpy', 'torch', 'torch_utils', 'dnnlib'}),
    ('stylegan2_D', {'numpy', 'torch', 'torch_utils', 'dnnlib'}),
    ('biggan_G', None),
    ('biggan_D', None),
])
def test_embedded_sources_import_nothing_from_training(name, allowed):
    net = make_cases()[name][0]
    sources = embedded_sources(pickle.dumps(net))
    assert sources
    for src in sources:
        packages = imported_packages(src)
        assert not {p for p in packages if p in ('training', '.') or p.startswith('string ')}, (src.splitlines()[0], packages)
        if allowed is not None:
            assert packages <= allowed, (src.splitlines()[0], packages - allowed)

#----------------------------------------------------------------------------
