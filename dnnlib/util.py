# Placeholder replaced within the hour by the lead: EasyDict only.

#----------------------------------------------------------------------------
# A dict whose keys can also be read and written as attributes.

class EasyDict(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]

def make_cache_dir_path(*paths):
    import os
    root = os.environ.get('DNNLIB_CACHE_DIR') or os.path.join(os.path.expanduser('~'), '.cache', 'dnnlib')
    return os.path.join(root, *paths)
