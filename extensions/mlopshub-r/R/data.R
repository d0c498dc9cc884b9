# Versioned data: read a DVC-tracked file at a given version (git revision).

#' Read a DVC-tracked CSV at a version.
#' @param path path of the tracked file inside the project
#' @param rev git revision (commit, tag, branch) of the version; NULL for the workspace copy
#' @param repo the project (a folder or git URL); NULL for the current project
#' @param ... passed to utils::read.csv
read_dvc <- function(path, rev = NULL, repo = NULL, ...) {
  dvc_api <- reticulate::import("dvc.api")
  text <- tryCatch(
    dvc_api$read(path, repo = repo, rev = rev),
    error = function(e) stop(sprintf("read_dvc('%s', rev = %s): %s", path,
                                     if (is.null(rev)) "NULL" else sprintf("'%s'", rev),
                                     conditionMessage(e)), call. = FALSE)
  )
  utils::read.csv(text = text, ...)
}
