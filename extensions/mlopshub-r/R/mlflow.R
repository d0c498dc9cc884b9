# Experiments: the team's MLflow workspace through the Python MLflow client
# (reticulate), so R runs get the same lineage tags as Python runs.

mlflow_module <- function() {
  reticulate::import("mlflow")
}

#' Start a run in the team's MLflow workspace; returns its id (invisibly).
#' @param experiment experiment name (created if missing); NULL keeps the active one
#' @param run_name optional run name
#' @param tags named list of extra tags
start_run <- function(experiment = NULL, run_name = NULL, tags = list()) {
  mlflow <- mlflow_module()
  if (!is.null(experiment)) mlflow$set_experiment(experiment)
  run <- mlflow$start_run(run_name = run_name, tags = reticulate::dict(tags))
  invisible(run$info$run_id)
}

#' End the active run.
#' @param status "FINISHED", "FAILED" or "KILLED"
end_run <- function(status = "FINISHED") {
  invisible(mlflow_module()$end_run(status = status))
}

#' The id of the active run, or NULL.
active_run_id <- function() {
  run <- mlflow_module()$active_run()
  if (is.null(run)) NULL else run$info$run_id
}

#' Log one parameter.
log_param <- function(key, value) {
  invisible(mlflow_module()$log_param(key, as.character(value)))
}

#' Log parameters from a named list.
log_params <- function(params) {
  stopifnot(is.list(params), !is.null(names(params)), all(names(params) != ""))
  invisible(mlflow_module()$log_params(reticulate::dict(lapply(params, as.character))))
}

#' Log one metric (optionally at a step).
log_metric <- function(key, value, step = NULL) {
  if (!is.null(step)) step <- as.integer(step)
  invisible(mlflow_module()$log_metric(key, as.numeric(value), step = step))
}

#' Log metrics from a named list or named numeric vector.
log_metrics <- function(metrics, step = NULL) {
  if (!is.null(step)) step <- as.integer(step)
  values <- lapply(as.list(metrics), as.numeric)
  invisible(mlflow_module()$log_metrics(reticulate::dict(values), step = step))
}

#' Log a local file or folder as an artifact of the active run.
log_artifact <- function(path, artifact_path = NULL) {
  if (!file.exists(path)) stop(sprintf("log_artifact: no file or folder at '%s'", path), call. = FALSE)
  invisible(mlflow_module()$log_artifact(normalizePath(path), artifact_path = artifact_path))
}

#' Set a tag on the active run.
set_tag <- function(key, value) {
  invisible(mlflow_module()$set_tag(key, as.character(value)))
}
