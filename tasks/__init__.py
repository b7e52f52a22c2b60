"""Prefect tasks: run a stage through DVC, manage run workspaces, open and close MLflow runs."""
