# Miscellaneous utilities shared by every part of the project (config dicts, the name registry, URL cache).

from . import util
from .util import EasyDict, make_cache_dir_path

#----------------------------------------------------------------------------
