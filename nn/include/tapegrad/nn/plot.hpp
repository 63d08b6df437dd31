// Plots are drawn by gnuplot (Debian's gnuplot-nox) from data files: the
// runner and the data-file writer that the examples and `tapegrad train` share.

#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace nn::plot {

// Whether an executable gnuplot is on PATH (checked before a long run).
bool gnuplot_available();

// Runs gnuplot on `script` (given on its standard input, with the working
// directory set to `dir` so data files can be named relatively). Throws
// ag::Error with gnuplot's own message when it fails or is missing.
void gnuplot(const std::filesystem::path& dir, const std::string& script);

// A whitespace-separated data file for gnuplot: a "# header" line, then one
// row per entry of the columns (all the same length; NaN where a value is
// missing). Returns the path.
std::filesystem::path write_columns(const std::filesystem::path& path,
                                    const std::vector<std::string>& header,
                                    const std::vector<std::vector<double>>& columns);

// The start of a gnuplot script for a PNG of the given size at `path`, in the
// project's look (pngcairo, a readable font, a light grid).
std::string png_terminal(const std::filesystem::path& path, int width = 800, int height = 500);

}  // namespace nn::plot
