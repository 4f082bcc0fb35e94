# metrics package.
