# The network-file converter command, and the scripting API of the original code's legacy.py
# (`legacy.load_network_pkl(f, force_fp16=False)` and friends), which now lives in
# training/network_files.py and is re-exported here for user scripts. See docs/generate.md.

import click

from training.network_files import ALL_KEYS, MODULE_KEYS, NETWORK_KEYS, SAFE_CLASS_PREFIXES, SAFETENSORS_FORMAT # pylint: disable=unused-import
from training.network_files import NetworkLoadError, UntrustedCodeError, compare_outputs, convert_module, convert_network_data # pylint: disable=unused-import
from training.network_files import load_network_pkl, save_network_pkl, save_network_safetensors # pylint: disable=unused-import

#----------------------------------------------------------------------------
# Command line: rebuild an old pickle's networks as the current classes.

@click.command()
@click.option('--source', help='Input network pickle: path or URL', required=True, metavar='PATH')
@click.option('--dest', help='Output: NAME.pkl (pickle) or NAME.safetensors (weights only)', required=True, metavar='PATH')
@click.option('--force-fp16', help='Rebuild with float16 in the 4 highest resolutions', is_flag=True)
@click.option('--trust-code', help='Load by running the code stored in the pickle (only for files you trust)', is_flag=True)
def convert_network_pickle(source, dest, force_fp16, trust_code):
    """Convert a network pickle (original StyleGAN2-ADA / StyleGAN3 or an older one of this
    project) into this project's current classes, checking that the outputs are unchanged.

    \b
    python legacy.py --source=https://.../ffhq.pkl --dest=ffhq.pkl
    python legacy.py --source=ffhq.pkl --dest=ffhq.safetensors

    \b
    Pickles whose embedded code is a known release of a family this project implements load
    without running anything from the file; any other needs --trust-code (see docs/pickles.md).
    """
    if not dest.endswith(('.pkl', '.safetensors')):
        raise click.BadParameter('must end with .pkl or .safetensors', param_hint='--dest')
    try:
        data = load_network_pkl(source, force_fp16=force_fp16, trust_code=trust_code, log=lambda msg: click.echo(msg, err=True))
        data, diffs = convert_network_data(data, log=lambda msg: click.echo(msg, err=True))
        for key, diff in diffs.items():
            same = 'identical outputs' if diff == 0 else f'outputs differ by at most {diff:g}'
            click.echo(f'{key}: rebuilt as {type(data[key]).__module__}.{type(data[key]).__name__}, {same}')
        if dest.endswith('.safetensors'):
            save_network_safetensors(dest, data)
        else:
            save_network_pkl(dest, data)
    except NetworkLoadError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f'Wrote {dest}')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    convert_network_pickle() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
