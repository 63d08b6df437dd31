// nn::fit: the training loop, with a progress bar, per-epoch history, the
// lecture's diagnostics, and checkpoints from which a run resumes exactly.

#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tapegrad/anomaly.hpp"  // FitOptions::check_finite throws ag::AnomalyError
#include "tapegrad/nn/data.hpp"
#include "tapegrad/nn/loss.hpp"  // FitOptions::loss
#include "tapegrad/nn/metrics.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/nn/optim.hpp"

namespace nn {

struct EpochStats {
  std::size_t epoch = 0;      // 1-based
  double loss = 0;            // mean over the epoch's batches, weighted by rows
  double train_accuracy = 0;  // of the predictions made while training
  double test_accuracy = -1;  // -1 without a test set
  double seconds = 0;
  double lr = 0;
  std::vector<double> grad_norms;     // per Linear: mean ||dL/dW|| over the epoch's steps
  std::vector<double> dead_fraction;  // per rectifier layer: units never active this epoch
  // A regression set (Note [Classification or regression], data.hpp) has no accuracy (the two
  // above stay 0 and -1): R² and RMSE of the predictions made while training, and on the test
  // set (test_rmse -1 without one).
  bool regression = false;
  double train_r2 = 0, train_rmse = 0;
  double test_r2 = 0, test_rmse = -1;
  double val_loss = -1;  // the model's mean loss on the validation rows; -1 without them
};

// Note [Validation and early stopping]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// FitOptions::validation_fraction holds round(fraction * rows) of the training rows out, drawn
// by a shuffle seeded by FitOptions::seed (the same rows on every run and resume), and fit
// trains on the rest. After each epoch the model's mean loss on them (eval mode, no gradients)
// is EpochStats::val_loss, which three things watch, as Keras's callbacks do:
// - early stopping (EarlyStopping): an epoch improves when val_loss < best - min_delta; after
//   `patience` epochs in a row that do not, fit stops (History::stopped_early);
// - save_best (ModelCheckpoint with save_best_only): the checkpoint of each epoch whose val_loss
//   is below every earlier one, written atomically, so the file holds the best epoch's weights;
// - reduce_on_plateau: nn::ReduceLROnPlateau stepped with val_loss after each epoch.
// The validation losses are in the checkpoint's metadata ("fit.val_loss"), and a resumed run
// replays them through all three, so it stops, saves and reduces where an uninterrupted one
// would.
struct EarlyStopping {
  std::size_t patience = 5;  // epochs without improvement before stopping (at least 1)
  double min_delta = 0;      // what counts as an improvement: val_loss < best - min_delta
};

// A regression set (real-valued targets, Note [Classification or regression]) trains with
// loss mse, l1 or huber: the model's outputs against the targets, one column per target.
struct FitOptions {
  std::size_t epochs = 10;
  std::int64_t batch_size = 32;
  bool shuffle = true;
  std::uint64_t seed = 0;
  LossKind loss = LossKind::cross_entropy;
  double l2 = 0;             // adds l2 * sum of every parameter squared (micrograd's moons)
  double l1 = 0;             // adds l1 * sum of every parameter's |p| (TF Playground's L1)
  LrSchedule schedule = {};  // per epoch, from the optimizer's initial rate; empty: constant
  const Dataset* test = nullptr;
  enum class Progress { automatic, bar, lines, quiet };
  Progress progress = Progress::automatic;  // automatic: a bar on a terminal, else lines
  std::FILE* out = stderr;
  // A run estimated to last longer than this says so at its start (Note [The first estimate]).
  double announce_over_seconds = 5;
  bool diagnostics = false;  // fill grad_norms and dead_fraction (costs a scan per step)
  // Anomaly mode (Note [Anomaly mode], tapegrad/anomaly.hpp): the first non-finite value or
  // gradient of a step, or a parameter an optimizer step made non-finite, throws
  // ag::AnomalyError naming it, before any checkpoint is written from the poisoned weights.
  bool check_finite = false;
  // Gradient clipping after each backward, before the step (Note [Gradient clipping], optim.hpp):
  // by value first, then by global 2-norm. Unset: no clipping.
  std::optional<double> clip_grad_value = {};
  std::optional<double> clip_grad_norm = {};
  // Saved after every epoch (atomically, with the optimizer's state) when set.
  std::string checkpoint = {};
  // Stored in every checkpoint's metadata beside fit's own "fit.history": what a tool needs to
  // rebuild the model (tapegrad train writes its sizes, activations, loss and data set).
  std::map<std::string, std::string> checkpoint_metadata = {};
  // Continue from `checkpoint` if it exists: the result equals an uninterrupted run's.
  bool resume = false;
  // With `resume`, read this checkpoint instead of `checkpoint`, which is then only written:
  // resuming into a new file writes nothing until the old one has loaded whole.
  std::string resume_from = {};
  // A run held in memory that trained this many epochs already (the playground trains in
  // slices): fit runs epochs first_epoch + 1 to `epochs`, shuffled as an uninterrupted run's.
  std::size_t first_epoch = 0;
  std::function<void(const EpochStats&)> on_epoch = {};
  // Note [Validation and early stopping]: in [0, 1); 0 holds nothing out.
  double validation_fraction = 0;
  std::optional<EarlyStopping> early_stopping = {};
  std::string save_best = {};  // a checkpoint path, written at every best epoch
  // Exclusive with `schedule`, which sets the rate each epoch itself.
  std::optional<PlateauOptions> reduce_on_plateau = {};
};

struct History {
  std::vector<EpochStats> epochs;
  std::size_t resumed_from = 0;  // epochs loaded from the checkpoint
  // With a validation split (Note [Validation and early stopping]): the epoch (1-based) of the
  // lowest val_loss, and whether early stopping ended the run before FitOptions::epochs.
  std::size_t best_epoch = 0;
  bool stopped_early = false;
};

// The epochs a checkpoint written by fit() holds, from its metadata "fit.history"; every number
// is checked, and a malformed history is an ag::Error naming `path`. fit() reads it on resume;
// a tool may check it first, before it prints or writes anything.
std::vector<EpochStats> decode_history(const std::string& text, const std::string& path);

// "45 s", "5 min 47 s", "1 h 05 min": a duration as the progress bar and its estimate print it.
std::string duration_text(double seconds);

// Trains `model` on `train`; returns every epoch's statistics (those loaded
// from a checkpoint included).
History fit(Module& model, Optimizer& optimizer, const Dataset& train, const FitOptions& options);

// The accuracy of `model` on `data` and its mean loss, without recording gradients; for a
// regression set, R² and RMSE instead of the accuracy.
struct Evaluation {
  double accuracy = 0;
  double loss = 0;
  double r2 = 0, rmse = 0;  // regression sets only
};
Evaluation evaluate(Module& model, const Dataset& data, LossKind loss,
                    std::int64_t batch_size = 1024);

}  // namespace nn
