"""Model-driven feedback protocols, one module each, on the runner's cache and store."""
