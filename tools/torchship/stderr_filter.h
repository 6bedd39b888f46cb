// Compiled (AOTInductor) models print their errors on std::cerr ("Error: ...") as well as
// returning them; torchship reports each in one line of its own, so the CLI drops those copies.
#pragma once

namespace torchship::cli {

// Routes std::cerr through a filter for the rest of the process: lines that start with
// "Error: " or "Error in op: " (AOTInductor's runtime) and the blank line after one are dropped,
// everything else goes to stderr unchanged. Thread-safe; call once, early in main.
void drop_compiled_code_error_copies();

}  // namespace torchship::cli
