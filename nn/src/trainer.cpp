// The training loop: batches, loss, backward, optimizer step; statistics,
// progress, diagnostics and checkpoints around it.

#include "tapegrad/nn/trainer.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

#include "tapegrad/nn/checkpoint.hpp"
#include "tapegrad/nn/diagnostics.hpp"
#include "tapegrad/nn/layers.hpp"
#include "tapegrad/nn/loss.hpp"
#include "tapegrad/nn/metrics.hpp"
#include "tapegrad/nn/norm.hpp"

namespace nn {

namespace {

// A regression batch's loss: one output column per target column.
ag::Tensor regression_loss(ag::Tensor out, ag::Tensor target, LossKind kind) {
  if (out.shape()[1] != target.shape()[1])
    ag::fail("{} loss: the model has {} outputs for {} target column{}", loss_name(kind),
             out.shape()[1], target.shape()[1], target.shape()[1] == 1 ? "" : "s");
  switch (kind) {
    case LossKind::mse: return mse_loss(out, target);
    case LossKind::l1: return l1_loss(out, target);
    case LossKind::huber: return huber_loss(out, target);
    case LossKind::bce:
    case LossKind::bce_with_logits:
    case LossKind::cross_entropy:
    case LossKind::hinge:
      ag::fail(
          "{} loss: a classification loss; a regression set (real-valued targets) trains "
          "with mse, l1 or huber",
          loss_name(kind));
  }
  return {};
}

// The loss of a batch's outputs. Binary losses want one output column.
ag::Tensor batch_loss(ag::TensorTape& tape, ag::Tensor out, const Batch& batch, LossKind kind) {
  if (batch.regression()) return regression_loss(out, batch.regression_targets(tape), kind);
  if (kind != LossKind::cross_entropy && out.shape()[1] != 1)
    throw ag::Error(
        fmt::format("{} loss: the model has {} outputs; a binary loss needs 1 (use "
                    "ce for {} classes)",
                    loss_name(kind), out.shape()[1], out.shape()[1]));
  switch (kind) {
    case LossKind::bce: return bce_loss(out, batch.targets(tape, Target::binary));
    case LossKind::bce_with_logits:
      return bce_with_logits(out, batch.targets(tape, Target::binary));
    case LossKind::cross_entropy: return cross_entropy(out, batch.y);
    case LossKind::mse: return mse_loss(out, batch.targets(tape, Target::binary));
    case LossKind::hinge: return hinge_loss(out, batch.targets(tape, Target::sign));
    case LossKind::l1:
    case LossKind::huber:
      ag::fail(
          "{} loss: a regression loss; a classification set trains with ce, bce, "
          "bce_logits, mse or hinge",
          loss_name(kind));
  }
  return {};
}

std::vector<Linear*> linear_layers(Module& m) {
  std::vector<Linear*> out;
  if (auto* l = dynamic_cast<Linear*>(&m)) out.push_back(l);
  for (auto& [name, child] : m.children())
    for (Linear* l : linear_layers(*child)) out.push_back(l);
  return out;
}

// History in a checkpoint's metadata: one "loss train test seconds lr" line per epoch,
// numbers in round-trip form; a regression epoch's line adds "train_r2 train_rmse test_r2
// test_rmse", so a classifier's checkpoint reads as it always did.
std::string encode_history(const std::vector<EpochStats>& epochs) {
  std::string s;
  for (const EpochStats& e : epochs) {
    s += fmt::format("{} {} {} {} {}", e.loss, e.train_accuracy, e.test_accuracy, e.seconds, e.lr);
    if (e.regression)
      s += fmt::format(" {} {} {} {}", e.train_r2, e.train_rmse, e.test_r2, e.test_rmse);
    s += '\n';
  }
  return s;
}

// What watches the validation loss (Note [Validation and early stopping]): the best epoch for
// save_best, early stopping's count of epochs without improvement, and ReduceLROnPlateau.
class ValidationWatch {
 public:
  ValidationWatch(const FitOptions& o, Optimizer& optimizer) : early_(o.early_stopping) {
    if (o.reduce_on_plateau) plateau_.emplace(optimizer, *o.reduce_on_plateau);
  }

  // Takes epoch `epoch`'s (1-based) validation loss; returns whether it is the best so far
  // (a NaN never is).
  bool observe(std::size_t epoch, double val_loss) {
    const bool best = val_loss < best_loss_;
    if (best) best_loss_ = val_loss, best_epoch_ = epoch;
    if (early_) {
      // Keras's EarlyStopping: an improvement beats the best by more than min_delta.
      if (val_loss < early_best_ - early_->min_delta) {
        early_best_ = val_loss;
        wait_ = 0;
      } else {
        ++wait_;
      }
    }
    if (plateau_) plateau_->step(val_loss);
    return best;
  }
  bool stop() const { return early_ && wait_ >= early_->patience; }
  std::size_t best_epoch() const { return best_epoch_; }

 private:
  static constexpr double kInfinity = std::numeric_limits<double>::infinity();
  std::optional<EarlyStopping> early_;
  std::optional<ReduceLROnPlateau> plateau_;
  double best_loss_ = kInfinity, early_best_ = kInfinity;
  std::size_t best_epoch_ = 0, wait_ = 0;
};

// The validation losses in a checkpoint's metadata ("fit.val_loss"), one per line in round-trip
// form, as the history's lines are.
std::string encode_val_losses(const std::vector<EpochStats>& epochs) {
  std::string s;
  for (const EpochStats& e : epochs) s += fmt::format("{}\n", e.val_loss);
  return s;
}

std::vector<double> decode_val_losses(const std::string& text, std::size_t epochs,
                                      const std::string& path) {
  std::vector<double> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream field(line);
    double v = 0;
    if (!(field >> v) || !(field >> std::ws).eof() || !(v >= 0 || v == -1))
      ag::fail("{}: the validation losses in its metadata are malformed (epoch {})", path,
               out.size() + 1);
    out.push_back(v);
  }
  if (out.size() != epochs || std::find(out.begin(), out.end(), -1.0) != out.end())
    ag::fail(
        "{}: the checkpoint has no validation loss for each of its {} epochs: it was trained "
        "without a validation split, and a run with one cannot continue it",
        path, epochs);
  return out;
}

// The bar on a terminal ("\r" rewrites the line), or one line per epoch.
class Progress {
 public:
  Progress(const FitOptions& o, bool regression)
      : out_(o.out), announce_over_(o.announce_over_seconds), regression_(regression) {
    mode_ = o.progress;
    if (mode_ == FitOptions::Progress::automatic)
      mode_ = out_ && ::isatty(::fileno(out_)) ? FitOptions::Progress::bar
                                               : FitOptions::Progress::lines;
    if (out_ == nullptr) mode_ = FitOptions::Progress::quiet;
  }

  // `score` is the accuracy so far, or a regression set's R².
  void batch(std::size_t epoch, std::size_t epochs, std::int64_t done, std::int64_t total,
             double loss, double score, double eta) {
    if (mode_ != FitOptions::Progress::bar) return;
    constexpr int kWidth = 24;
    const int filled = int(kWidth * done / std::max<std::int64_t>(total, 1));
    fmt::print(out_, "\repoch {}/{} [{}{}] loss {:.4f} {} {:.3f} eta {} ", epoch, epochs,
               std::string(std::size_t(filled), '='),
               std::string(std::size_t(kWidth - filled), ' '), loss, regression_ ? "r2" : "acc",
               score, duration_text(eta));
    std::fflush(out_);
  }

  // Note [The first estimate]
  // ~~~~~~~~~~~~~~~~~~~~~~~~~
  // A run of minutes says so at its start, once its first batches (a second's worth, or the
  // first epoch if that is sooner) give a rate; a run of a few seconds says nothing. Both the
  // estimate and the bar's eta count the whole run, every remaining epoch included.
  void estimate(double total_seconds, std::size_t epochs) {
    if (estimated_ || mode_ == FitOptions::Progress::quiet) return;
    estimated_ = true;
    if (total_seconds <= announce_over_) return;
    if (mode_ == FitOptions::Progress::bar) fmt::print(out_, "\r\033[K");
    fmt::print(out_, "{} epoch{} to go: about {}\n", epochs, epochs == 1 ? "" : "s",
               duration_text(total_seconds));
    std::fflush(out_);
  }

  void stopped(std::size_t epoch, std::size_t best_epoch, const EarlyStopping& early) {
    if (mode_ == FitOptions::Progress::quiet) return;
    fmt::print(out_,
               "early stopping after epoch {}: the validation loss has not improved by more than "
               "{} for {} epoch{} ({})\n",
               epoch, early.min_delta, early.patience, early.patience == 1 ? "" : "s",
               best_epoch == 0 ? std::string("none was a finite number")
                               : fmt::format("the best was epoch {}", best_epoch));
    std::fflush(out_);
  }

  void epoch(const EpochStats& e, std::size_t epochs) {
    if (mode_ == FitOptions::Progress::quiet) return;
    if (mode_ == FitOptions::Progress::bar) fmt::print(out_, "\r\033[K");
    if (e.regression) {
      fmt::print(out_, "epoch {}/{}  loss {:.4f}  train r2 {:.4f} rmse {:.4f}", e.epoch, epochs,
                 e.loss, e.train_r2, e.train_rmse);
      if (e.test_rmse >= 0)
        fmt::print(out_, "  test r2 {:.4f} rmse {:.4f}", e.test_r2, e.test_rmse);
    } else {
      fmt::print(out_, "epoch {}/{}  loss {:.4f}  train acc {:.4f}", e.epoch, epochs, e.loss,
                 e.train_accuracy);
      if (e.test_accuracy >= 0) fmt::print(out_, "  test acc {:.4f}", e.test_accuracy);
    }
    if (e.val_loss >= 0) fmt::print(out_, "  val loss {:.4f}", e.val_loss);
    fmt::print(out_, "  {:.2f}s\n", e.seconds);
    std::fflush(out_);
  }

 private:
  std::FILE* out_;
  double announce_over_;
  bool regression_;
  FitOptions::Progress mode_;
  bool estimated_ = false;
};

}  // namespace

std::string duration_text(double seconds) {
  if (!(seconds < 1e9)) return "a very long time";  // NaN or absurd: no number to round
  const auto s = static_cast<std::int64_t>(std::llround(std::max(seconds, 0.0)));
  if (s < 60) return fmt::format("{} s", s);
  if (s < 3600) return fmt::format("{} min {} s", s / 60, s % 60);
  return fmt::format("{} h {:02} min", s / 3600, (s % 3600) / 60);
}

std::vector<EpochStats> decode_history(const std::string& text, const std::string& path) {
  std::vector<EpochStats> out;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    EpochStats e;
    e.epoch = out.size() + 1;
    // Read back, not trusted: an accuracy is a fraction (a test accuracy -1 without a test set),
    // a time and a learning rate finite and not negative; the loss may be anything a run had.
    bool read = static_cast<bool>(fields >> e.loss >> e.train_accuracy >> e.test_accuracy >>
                                  e.seconds >> e.lr);
    if (read && !(fields >> std::ws).eof()) {  // a regression epoch's four more numbers
      e.regression = true;
      read = static_cast<bool>(fields >> e.train_r2 >> e.train_rmse >> e.test_r2 >> e.test_rmse) &&
             std::isfinite(e.train_rmse) && e.train_rmse >= 0 &&
             ((std::isfinite(e.test_rmse) && e.test_rmse >= 0) || e.test_rmse == -1);
    }
    read = read && (fields >> std::ws).eof();
    const auto fraction = [](double x) { return x >= 0 && x <= 1; };
    if (!read || !fraction(e.train_accuracy) ||
        !(fraction(e.test_accuracy) || e.test_accuracy == -1) || !std::isfinite(e.seconds) ||
        e.seconds < 0 || !std::isfinite(e.lr) || e.lr < 0)
      throw ag::Error(
          fmt::format("{}: the training history in its metadata is malformed "
                      "(epoch {})",
                      path, e.epoch));
    out.push_back(e);
  }
  return out;
}

Evaluation evaluate(Module& model, const Dataset& data, LossKind loss, std::int64_t batch_size) {
  const bool was_training = model.is_training();
  model.eval();
  ag::TensorTape tape;
  DataLoader loader(data, batch_size, false);
  double loss_sum = 0, correct = 0;
  std::optional<RegressionMetrics> metrics;
  if (data.regression()) metrics.emplace(data.outputs);
  for (const Batch& batch : loader) {
    tape.reset();
    ag::NoGrad no_grad(tape);
    ag::Tensor out = model(batch.inputs(tape));
    loss_sum += batch_loss(tape, out, batch, loss).item() * double(batch.rows);
    if (metrics)
      metrics->add(out, batch.regression_targets(tape));
    else
      correct += accuracy(out, batch.y, scores_of(loss)) * double(batch.rows);
  }
  model.train(was_training);
  const double n = double(std::max<std::int64_t>(data.rows, 1));
  Evaluation e{correct / n, loss_sum / n};
  if (metrics) e.r2 = metrics->r2(), e.rmse = metrics->rmse();
  return e;
}

History fit(Module& model, Optimizer& optimizer, const Dataset& all_train,
            const FitOptions& options) {
  if (options.epochs == 0) throw ag::Error("fit: epochs must be at least 1");
  if (options.first_epoch >= options.epochs)
    ag::fail("fit: first_epoch {} leaves none of {} epochs to run", options.first_epoch,
             options.epochs);
  all_train.validate();
  // Note [Validation and early stopping]: the rows held out, and what watches their loss.
  const double fraction = options.validation_fraction;
  if (!(fraction >= 0 && fraction < 1))
    ag::fail("fit: validation_fraction must be in [0, 1), not {}", fraction);
  const bool validating = fraction > 0;
  if (!validating &&
      (options.early_stopping || options.reduce_on_plateau || !options.save_best.empty()))
    ag::fail(
        "fit: early_stopping, reduce_on_plateau and save_best watch the validation loss: set "
        "validation_fraction");
  if (options.early_stopping && options.early_stopping->patience == 0)
    ag::fail("fit: early stopping's patience must be at least 1");
  if (options.early_stopping &&
      !(options.early_stopping->min_delta >= 0 && std::isfinite(options.early_stopping->min_delta)))
    ag::fail("fit: early stopping's min_delta must be a finite number >= 0, not {}",
             options.early_stopping->min_delta);
  if (options.reduce_on_plateau && options.schedule)
    ag::fail("fit: a schedule and reduce_on_plateau both set the learning rate; give one");
  TrainTest held;
  if (validating) {
    // Seeded apart from the loader's shuffles, which use the seed as it is.
    held = all_train.split(fraction, options.seed ^ 0x76616c6964617465ull);
    if (held.train.rows == 0 || held.test.rows == 0)
      ag::fail(
          "fit: validation_fraction {} of {} rows leaves {} for validation and {} for "
          "training; each needs at least one",
          fraction, all_train.rows, held.test.rows, held.train.rows);
  }
  const Dataset& train = validating ? held.train : all_train;
  const Dataset& validation = held.test;
  check_batch_norm_batches(model, train.rows, options.batch_size);
  History history;
  const double base_lr = optimizer.lr();
  const std::vector<Linear*> linears = linear_layers(model);

  ValidationWatch watch(options, optimizer);
  std::size_t start = options.first_epoch;
  const std::string& source =
      options.resume_from.empty() ? options.checkpoint : options.resume_from;
  if (options.resume && !source.empty() && std::filesystem::exists(source)) {
    CheckpointExtras extras{&optimizer, {}};
    load(model, source, &extras);
    history.epochs = decode_history(extras.metadata["fit.history"], source);
    start = history.resumed_from = history.epochs.size();
    if (validating) {
      // The watch replays the losses it saw; the rate is the checkpoint's, which the replayed
      // plateau steps reached already.
      const std::vector<double> losses =
          decode_val_losses(extras.metadata["fit.val_loss"], history.epochs.size(), source);
      const double lr = optimizer.lr();
      for (std::size_t e = 0; e < losses.size(); ++e) {
        history.epochs[e].val_loss = losses[e];
        watch.observe(e + 1, losses[e]);
      }
      optimizer.set_lr(lr);
      history.best_epoch = watch.best_epoch();
      if (watch.stop()) {  // it had stopped: there is nothing left to train
        history.stopped_early = true;
        return history;
      }
    }
  }

  DataLoader loader(train, options.batch_size, options.shuffle, options.seed);
  loader.set_epoch(start);
  ag::TensorTape tape;
  tape.set_check_finite(options.check_finite);
  // What an optimizer step writes is checked too, so the epoch's checkpoint never holds it.
  std::vector<std::pair<std::string, Parameter*>> checked;
  if (options.check_finite) checked = model.named_parameters();
  Progress progress(options, train.regression());
  DeadUnits dead;
  std::vector<double> norm_sums(linears.size());
  std::optional<RegressionMetrics> metrics;  // a regression set's R² and RMSE while training
  if (train.regression()) metrics.emplace(train.outputs);
  if (options.test && options.test->regression() != train.regression())
    ag::fail("fit: the training set is for {} and the test set for {}",
             train.regression() ? "regression" : "classification",
             options.test->regression() ? "regression" : "classification");
  model.train();

  const auto run_start = std::chrono::steady_clock::now();
  const double batches_to_run = double(loader.size()) * double(options.epochs - start);
  std::int64_t batches_run = 0;
  for (std::size_t epoch = start; epoch < options.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    if (options.schedule) optimizer.set_lr(options.schedule(epoch, base_lr));
    double loss_sum = 0, correct = 0;
    std::int64_t seen = 0, steps = 0;
    if (metrics) metrics->reset();
    dead.clear();
    std::fill(norm_sums.begin(), norm_sums.end(), 0.0);

    for (const Batch& batch : loader) {
      tape.reset();
      ag::Tensor out = model(batch.inputs(tape));
      ag::Tensor loss = batch_loss(tape, out, batch, options.loss);
      const double data_loss = loss.item();
      if (options.l2 > 0) {
        ag::Tensor penalty;
        for (auto& [name, p] : model.named_parameters()) {
          ag::Tensor s = ag::sum(ag::pow(p->on(tape, name), 2.0));
          penalty = penalty.empty() ? s : penalty + s;
        }
        loss = loss + options.l2 * penalty;
      }
      if (options.l1 > 0) {  // d|p|/dp is sign(p), 0 at 0 (the op table's kink policy)
        ag::Tensor penalty;
        for (auto& [name, p] : model.named_parameters()) {
          ag::Tensor s = ag::sum(ag::abs(p->on(tape, name)));
          penalty = penalty.empty() ? s : penalty + s;
        }
        loss = loss + options.l1 * penalty;
      }
      optimizer.zero_grad();
      tape.backward(loss);
      if (options.clip_grad_value) clip_grad_value(optimizer.params(), *options.clip_grad_value);
      if (options.clip_grad_norm) clip_grad_norm(optimizer.params(), *options.clip_grad_norm);
      optimizer.step();
      for (const auto& [name, p] : checked) check_parameter(name, *p);

      loss_sum += data_loss * double(batch.rows);
      if (metrics)
        metrics->add(out, batch.regression_targets(tape));
      else
        correct += accuracy(out, batch.y, scores_of(options.loss)) * double(batch.rows);
      seen += batch.rows;
      ++steps;
      if (options.diagnostics) {
        dead.observe(tape);
        for (std::size_t l = 0; l < linears.size(); ++l)
          norm_sums[l] += linears[l]->weight.grad_norm();
      }
      // The whole run's rate so far, the evaluations after each epoch included.
      ++batches_run;
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
      const double per_batch = elapsed / double(batches_run);
      const double eta = per_batch * (batches_to_run - double(batches_run));
      if (elapsed >= 1 || steps == loader.size())  // Note [The first estimate]
        progress.estimate(per_batch * batches_to_run, options.epochs - start);
      progress.batch(epoch + 1, options.epochs, steps, loader.size(), loss_sum / double(seen),
                     metrics ? metrics->r2() : correct / double(seen), eta);
    }

    EpochStats e;
    e.epoch = epoch + 1;
    e.loss = loss_sum / double(std::max<std::int64_t>(seen, 1));
    e.train_accuracy = correct / double(std::max<std::int64_t>(seen, 1));
    e.lr = optimizer.lr();
    if (metrics) {
      e.regression = true;
      e.train_r2 = metrics->r2(), e.train_rmse = metrics->rmse();
      if (options.test) {
        const Evaluation test = evaluate(model, *options.test, options.loss);
        e.test_r2 = test.r2, e.test_rmse = test.rmse;
      }
    } else if (options.test) {
      e.test_accuracy = evaluate(model, *options.test, options.loss).accuracy;
    }
    if (options.diagnostics) {
      for (double s : norm_sums)
        e.grad_norms.push_back(s / double(std::max<std::int64_t>(steps, 1)));
      for (auto& [scope, f] : dead.fractions()) e.dead_fraction.push_back(f);
    }
    bool best = false;
    if (validating) {
      e.val_loss = evaluate(model, validation, options.loss).loss;
      best = watch.observe(e.epoch, e.val_loss);  // may reduce the rate for the next epoch
      history.best_epoch = watch.best_epoch();
    }
    e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    history.epochs.push_back(e);
    const bool save_best = best && !options.save_best.empty();
    if (!options.checkpoint.empty() || save_best) {
      CheckpointExtras extras{&optimizer, options.checkpoint_metadata};
      extras.metadata["fit.history"] = encode_history(history.epochs);
      if (validating) extras.metadata["fit.val_loss"] = encode_val_losses(history.epochs);
      if (!options.checkpoint.empty()) save(model, options.checkpoint, extras);
      if (save_best) save(model, options.save_best, extras);
    }
    progress.epoch(e, options.epochs);
    if (options.on_epoch) options.on_epoch(e);
    if (watch.stop()) {
      history.stopped_early = true;
      progress.stopped(e.epoch, history.best_epoch, *options.early_stopping);
      break;
    }
  }
  return history;
}

}  // namespace nn
