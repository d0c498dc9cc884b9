# R models as MLflow pyfunc models: saved as RDS, predicted through rpy2, so the
# release pipeline can load and serve them like any Python model.

#' Log an R model (e.g. a glm) to the active run as an MLflow pyfunc model.
#'
#' The model is saved with saveRDS and logged by a separate Python process
#' (R cannot be embedded in the R session that is already running), which
#' checks that the model loads and predicts `input_example` through rpy2 and
#' records the signature from it.
#' @param model an R model object with a predict() method
#' @param input_example a data.frame of a few input rows (becomes the signature and example)
#' @param name artifact name of the model in the run
#' @param predict_type the `type` argument given to predict() (e.g. "response" for glm)
#' @param registered_model_name register a version under this name too (optional)
#' @return the model URI ("runs:/<run id>/<name>"), invisibly
log_r_model <- function(model, input_example, name = "model", predict_type = "response",
                        registered_model_name = NULL) {
  run_id <- active_run_id()
  if (is.null(run_id)) stop("log_r_model: no active run; call start_run() first", call. = FALSE)
  if (!is.data.frame(input_example) || nrow(input_example) == 0) {
    stop("log_r_model: input_example must be a data.frame with at least one row", call. = FALSE)
  }
  folder <- tempfile("mlopshub-r-model-")
  dir.create(folder)
  on.exit(unlink(folder, recursive = TRUE), add = TRUE)
  saveRDS(model, file.path(folder, "model.rds"))
  utils::write.csv(input_example, file.path(folder, "input_example.csv"), row.names = FALSE)
  args <- c(system.file("python", "log_r_model.py", package = "mlopshub"),
            "--run-id", run_id, "--folder", folder, "--name", name, "--predict-type", predict_type)
  if (!is.null(registered_model_name)) args <- c(args, "--registered-model-name", registered_model_name)
  python <- reticulate::py_exe()
  output <- system2(python, args, stdout = TRUE, stderr = TRUE)
  status <- attr(output, "status")
  if (!is.null(status) && status != 0) {
    stop(sprintf("log_r_model failed:\n%s", paste(output, collapse = "\n")), call. = FALSE)
  }
  invisible(sprintf("runs:/%s/%s", run_id, name))
}
