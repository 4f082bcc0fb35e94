# ops package.
