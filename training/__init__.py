# training package.
