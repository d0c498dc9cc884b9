"""Hub-managed services: MLflow (team workspaces), the idle culler, and later the pipeline."""
