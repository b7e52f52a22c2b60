"""Stage entry points for the stages that load weights (``run(cfg)`` + thin ``main``)."""
