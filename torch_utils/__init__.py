# torch_utils package.
