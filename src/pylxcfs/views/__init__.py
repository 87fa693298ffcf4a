"""Pure render functions, one module per virtual file, and the registry that lists them."""
