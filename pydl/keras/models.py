"""Sequential and functional models: compile, fit, evaluate, predict, summary, save.

Training runs the model up to the last layer's activation; a loss that can take the
logits of that activation (categorical cross-entropy after softmax, binary after
sigmoid) is computed from them in one stable pass, and the metrics see the activated
outputs. The loss minimized and reported adds the layers' regularization penalties
(model.losses). fit, evaluate and predict take arrays, Python generators or
pydl.data.DataLoaders (see data_adapters). Files written by save() are a NumPy .npz
archive (no pickle): the weights, the optimizer state, and the architecture and
compile settings as JSON.
"""
import numpy as np

from pydl import serialization
from pydl.autograd import no_grad
from pydl.keras import callbacks as callbacks_module
from pydl.keras import distributed as keras_distributed
from pydl.keras import layers as layers_module
from pydl.keras import losses, metrics as metrics_module, optimizers
from pydl.keras.data_adapters import DataBatches, as_array, is_batch_source
from pydl.keras.layers import InputLayer, KerasTensor, KerasWeight, Layer
from pydl.keras.utils import Progbar
from pydl.tensor import Tensor


def _batch_size(batch_size, method):
    """Keras's default of 32 for None; anything else must be a positive integer."""
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size <= 0:
        raise ValueError(f"{method}: batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


class Model:
    """A functional model, Model(inputs, outputs), from keras.Input tensors through layer
    calls to the output tensor (one input and one output, any DAG between)."""

    def __init__(self, inputs=None, outputs=None, name=None):
        self.name = name or layers_module._unique_name(type(self).__name__)
        self.stop_training = False
        self.optimizer = None
        self.compiled = False
        self.history = None
        if inputs is None and outputs is None:
            return
        inputs = inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 else inputs
        outputs = outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 \
            else outputs
        if not isinstance(inputs, KerasTensor) or not isinstance(outputs, KerasTensor):
            raise TypeError("Model(inputs, outputs): pass one keras.Input tensor and the one "
                            "tensor computed from it (several inputs or outputs are not "
                            "supported)")
        self.input, self.output = inputs, outputs
        self._nodes = self._topological(outputs)
        if inputs not in self._nodes:
            raise ValueError("Model: the output does not depend on the given input")
        stray = [n for n in self._nodes if n.layer is not None and not n.inputs
                 and n is not inputs]
        if stray:
            raise ValueError(f"Model: the output depends on an input that is not "
                             f"{inputs!r}: {stray[0]!r}")

    @staticmethod
    def _topological(output):
        order, seen = [], set()

        def visit(node):
            if id(node) in seen:
                return
            seen.add(id(node))
            for parent in node.inputs:
                visit(parent)
            order.append(node)
        visit(output)
        return order

    # ---- structure -------------------------------------------------------------------

    @property
    def layers(self):
        found = []
        for node in self._nodes:
            if node.layer not in found:
                found.append(node.layer)
        return found

    @property
    def built(self):
        return all(layer.built for layer in self.layers) and bool(self.layers)

    def _run(self, x, training):
        """(pre-activation output, the output layer) for concrete input x."""
        values = {id(self.input): x}
        result = None
        for node in self._nodes:
            if node is self.input:
                continue
            args = [values[id(p)] for p in node.inputs]
            args = args if len(args) > 1 else args[0]
            pre = node.layer.forward_pre_activation(args, training, **node.call_kwargs)
            if node is self.output:
                result = pre, node.layer
            else:
                values[id(node)] = node.layer.activate(pre)
        return result

    def __call__(self, x, training=False):
        pre, layer = self._run(x, training)
        return layer.activate(pre)

    @property
    def losses(self):
        """Every layer's regularization penalties (scalar Tensors) from the latest call."""
        return [penalty for layer in self.layers for penalty in layer.losses]

    @property
    def weights(self):
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self):
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [w for layer in self.layers for w in layer.non_trainable_weights]

    def get_weights(self):
        """Copies of every layer's weights, in Keras's layout (see Layer.get_weights)."""
        return [array for layer in self.layers for array in layer.get_weights()]

    def set_weights(self, weights):
        own = self.weights
        if len(weights) != len(own):
            raise ValueError(f"set_weights: the model has {len(own)} weights, got "
                             f"{len(weights)} arrays")
        offset = 0
        for layer in self.layers:
            count = len(layer.weights)
            layer.set_weights(weights[offset:offset + count])
            offset += count

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}")

    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"This model has not yet been built, so {what} is not possible. "
                             "Build the model first by calling build(input_shape), by calling "
                             "fit() on data, or by giving the first layer input_shape= (or "
                             "starting from keras.Input).")

    # ---- compile ---------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        unsupported = set(kwargs) - {"run_eagerly", "jit_compile", "steps_per_execution"}
        if unsupported:
            raise TypeError(f"compile: unsupported arguments {sorted(unsupported)}")
        if loss is None:
            raise ValueError("compile: pass a loss (e.g. 'categorical_crossentropy')")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        self._metric_specs = list(metrics or [])
        self.compiled = True

    def _make_metrics(self, output_shape):
        return [metrics_module.get(m, self.loss.name, output_shape) for m in self._metric_specs]

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"You must compile your model before {what}. Call "
                               "model.compile(optimizer, loss).")

    # ---- one batch -------------------------------------------------------------------

    def _loss_and_output(self, x, y, training, sample_weight=None):
        if y is None:
            raise ValueError("the data has no targets y: training and evaluating need "
                             "(x, y) batches")
        pre, layer = self._run(x, training)
        loss = self.loss.fused(y, pre, layer.activation, sample_weight)
        if loss is None or layer.activity_regularizer is not None:
            output = layer.activate(pre)
        if loss is None:
            loss = self.loss(y, output, sample_weight)
        else:
            with no_grad():
                output = layer.activation(pre.detach())
        for penalty in self.losses:
            loss = loss + penalty
        return loss, output.detach()

    def _train_batch(self, x, y, sample_weight, trackers):
        loss, output = self._loss_and_output(x, y, True, sample_weight)
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_weights)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self._track(trackers, loss, output, y, len(x))

    def _track(self, trackers, loss, output, y, batch):
        loss_tracker, metric_list = trackers
        loss_tracker.update_state(float(loss.item()), batch)
        predictions = output.numpy()
        for metric in metric_list:
            metric.update_state(y, predictions)

    def _logs(self, trackers, prefix=""):
        loss_tracker, metric_list = trackers
        logs = {prefix + "loss": loss_tracker.result()}
        for metric in metric_list:
            logs[prefix + metric.name] = metric.result()
        return logs

    def _trackers(self, x):
        if not self.built:
            self._build_from_data(x)
        return metrics_module.Mean("loss"), self._make_metrics(self._output_shape())

    def _build_from_data(self, x):
        with no_grad():
            self._run(Tensor(x[:1]) if not isinstance(x, Tensor) else x[:1], False)

    def _output_shape(self):
        return self.output.shape

    # ---- fit / evaluate / predict ------------------------------------------------------

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None):
        """Trains for `epochs` over x and y (arrays), or over the (x, y[, sample_weight])
        batches of a generator or DataLoader x (steps_per_epoch batches an epoch);
        returns the History.

        >>> import numpy as np
        >>> from pydl import keras
        >>> model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
        >>> model.compile("sgd", "mse")
        >>> def batches():
        ...     while True:
        ...         x = np.random.rand(8, 2)
        ...         yield x, x.sum(axis=1, keepdims=True)
        >>> history = model.fit(batches(), steps_per_epoch=5, epochs=2, verbose=0)
        >>> len(history.history["loss"])
        2
        """
        self._require_compiled("training")
        batch_size = _batch_size(batch_size, "fit")
        verbose = 1 if verbose == "auto" else verbose
        if validation_data is None and validation_split:
            if is_batch_source(x):
                raise ValueError("validation_split needs arrays x and y; with a generator or "
                                 "DataLoader pass validation_data")
            if not 0 < validation_split < 1:
                raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
            x, y = as_array(x, "x"), as_array(y, "y")
            split = int(len(x) * (1 - validation_split))  # the last samples, before shuffling
            validation_data = (x[split:], y[split:])
            x, y = x[:split], y[:split]
            if sample_weight is not None:
                sample_weight = as_array(sample_weight, "sample_weight")[:split]
        data = DataBatches(x, y, sample_weight, batch_size, steps_per_epoch, shuffle,
                           class_weight, "fit")
        if data.source is None and data.y is None:
            raise ValueError("fit needs arrays x and y, or a generator or DataLoader of "
                             "(x, y) batches")
        if data.source is None and len(data.x) == 0:
            raise ValueError("fit: x holds no samples; there is nothing to train on")
        validation = None
        if validation_data is not None:
            validation = self._batches(validation_data, validation_batch_size or batch_size,
                                       validation_steps, "validation_data")
        steps = data.steps
        parallel = keras_distributed.data_parallel(self)  # None without a process group
        if parallel is not None:
            verbose, callbacks = parallel.rank_zero_only(verbose, callbacks)
            data.same_order = parallel.same_order
        train_batch = self._train_batch if parallel is None else parallel.train_batch
        self.history = callbacks_module.History()
        callback_list = callbacks_module.CallbackList(
            [*(callbacks or []), self.history], self,
            {"epochs": epochs, "steps": steps, "verbose": verbose, "batch_size": batch_size})
        trackers = self._trackers(data.first_x())
        self.stop_training = False
        callback_list.call("on_train_begin", {})
        logs = {}
        for epoch in range(initial_epoch, epochs):
            for tracker in (trackers[0], *trackers[1]):
                tracker.reset_state()
            callback_list.call("on_epoch_begin", epoch, {})
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}")
            bar = Progbar(steps, verbose=verbose)
            done = 0
            for step, (xb, yb, wb) in enumerate(data.epoch()):
                callback_list.call("on_batch_begin", step, {})
                train_batch(xb, yb, wb, trackers)
                done = step + 1
                logs = self._logs(trackers)
                callback_list.call("on_batch_end", step, dict(logs))
                bar.update(done, list(logs.items()), finalize=False)
                if self.stop_training:
                    break
            logs = self._logs(trackers)
            if validation is not None:
                logs.update(self._evaluate_logs(validation, prefix="val_"))
            bar.update(done, list(logs.items()), finalize=True)
            callback_list.call("on_epoch_end", epoch, logs)
            if data.exhausted and steps is not None:
                print(f"fit: the input ran out of data after {done} of {steps} steps in epoch "
                      f"{epoch + 1}; stopping (give a generator that yields steps_per_epoch x "
                      "epochs batches, or a re-iterable DataLoader)")
                self.stop_training = True
            if self.stop_training:
                break
        callback_list.call("on_train_end", logs)
        return self.history

    @staticmethod
    def _batches(data, batch_size, steps, name):
        """DataBatches for validation_data: (x, y), (x, y, sample_weight), or a generator
        or DataLoader."""
        if is_batch_source(data):
            return DataBatches(data, batch_size=batch_size, steps_per_epoch=steps, name=name)
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            raise ValueError(f"{name} must be a tuple (x, y) or (x, y, sample_weight), or a "
                             "generator or DataLoader")
        return DataBatches(*data, batch_size=batch_size, steps_per_epoch=steps, name=name)

    def _evaluate_logs(self, data, prefix="", verbose=0):
        trackers = self._trackers(data.first_x())
        bar = Progbar(data.steps, verbose=verbose)
        done = 0
        with no_grad():
            for step, (xb, yb, wb) in enumerate(data.epoch()):
                loss, output = self._loss_and_output(xb, yb, False, wb)
                self._track(trackers, loss, output, yb, len(xb))
                done = step + 1
                bar.update(done, list(self._logs(trackers).items()), finalize=False)
        logs = self._logs(trackers, prefix)
        bar.update(done, list(logs.items()), finalize=True)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, return_dict=False):
        """The loss (a float) without metrics, else [loss, metric, ...] (or a dict), over
        arrays x, y or the batches of a generator or DataLoader x (`steps` of them).

        >>> import numpy as np
        >>> from pydl import keras
        >>> model = keras.Sequential([keras.layers.Dense(1, input_shape=(2,))])
        >>> model.compile("sgd", "mse")
        >>> model.set_weights([np.ones((2, 1)), np.zeros(1)])
        >>> model.evaluate(np.ones((4, 2)), np.zeros(4), sample_weight=[1, 1, 0, 0], verbose=0)
        2.0
        """
        self._require_compiled("evaluating")
        data = DataBatches(x, y, sample_weight, _batch_size(batch_size, "evaluate"), steps,
                           name="evaluate")
        logs = self._evaluate_logs(data, verbose=1 if verbose == "auto" else verbose)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None):
        """The model's outputs for x (an array, or a generator or DataLoader of x or
        (x, ...) batches) as one NumPy array (inference mode, in batches).

        >>> import numpy as np
        >>> from pydl import keras
        >>> model = keras.Sequential([keras.layers.Dense(3, activation="softmax")])
        >>> model.predict(np.ones((5, 4)), verbose=0).shape
        (5, 3)
        """
        data = DataBatches(x, batch_size=_batch_size(batch_size, "predict"), steps_per_epoch=steps,
                           name="predict")
        bar = Progbar(data.steps, verbose=1 if verbose == "auto" else verbose)
        outputs = []
        with no_grad():
            for step, (xb, _, _) in enumerate(data.epoch()):
                outputs.append(self(xb).numpy())
                bar.update(step + 1, finalize=False)
        bar.update(len(outputs), finalize=True)
        return np.concatenate(outputs) if outputs else np.empty((0,), np.float32)

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None):
        self._require_compiled("training")
        (xb, yb, wb), = DataBatches(x, y, sample_weight, len(x), class_weight=class_weight,
                                    name="train_on_batch").epoch()
        trackers = self._trackers(xb)
        self._train_batch(xb, yb, wb, trackers)
        values = list(self._logs(trackers).values())
        return values[0] if len(values) == 1 else values

    def test_on_batch(self, x, y):
        return self.evaluate(x, y, batch_size=len(x), verbose=0)

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=len(x), verbose=0)

    # ---- summary -----------------------------------------------------------------------

    def _summary_rows(self):
        return [(layer, layer.output_shape) for layer in self.layers]

    def summary(self, line_length=65, print_fn=None):
        """Prints a table of the layers (name and type, output shape, parameter count)
        and the total, trainable and non-trainable parameter counts. Columns widen to
        fit long names and shapes.

        >>> from pydl import keras
        >>> model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,), name="out")],
        ...                          name="tiny")
        >>> model.summary(line_length=40)
        Model: "tiny"
        ________________________________________
         Layer (type)     Output Shape  Param #
        ========================================
         out (Dense)      (None, 2)     8
        ========================================
        Total params: 8
        Trainable params: 8
        Non-trainable params: 0
        ________________________________________
        """
        self._require_built("summary()")
        print_fn = print_fn or print
        header = [" Layer (type)", "Output Shape", "Param #"]
        rows = [[f" {layer.name} ({type(layer).__name__})",
                 str(tuple(shape)) if shape is not None else "?", f"{layer.count_params():,}"]
                for layer, shape in self._summary_rows()]
        widths = [int(line_length * f) for f in (0.45, 0.3)]
        widths.append(line_length - sum(widths))
        for column in range(2):  # at least two spaces after the longest entry
            widths[column] = max([widths[column]] + [len(r[column]) + 2 for r in rows + [header]])
        line_length = max(line_length, sum(widths[:2]) + max(len(r[2]) for r in rows + [header]))

        def row(cells):
            return "".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

        lines = [f'Model: "{self.name}"', "_" * line_length, row(header), "=" * line_length]
        for i, cells in enumerate(rows):
            lines.append(row(cells))
            lines.append("_" * line_length if i + 1 < len(rows) else "=" * line_length)
        trainable = sum(w.numel() for w in self.trainable_weights)
        total = self.count_params()
        lines += [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}", "_" * line_length]
        for line in lines:
            print_fn(line)

    # ---- saving -------------------------------------------------------------------------

    def get_config(self):
        names = {id(node): i for i, node in enumerate(self._nodes)}
        return {"name": self.name,
                "layers": [_layer_config(layer) for layer in self.layers],
                "nodes": [{"layer": node.layer.name,
                           "inputs": [names[id(p)] for p in node.inputs],
                           "call_kwargs": node.call_kwargs}
                          for node in self._nodes],
                "input": names[id(self.input)], "output": names[id(self.output)]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        made = {c["config"]["name"]: _layer_from_config(c, custom_objects)
                for c in config["layers"]}
        tensors = []
        for node in config["nodes"]:
            layer = made[node["layer"]]
            if isinstance(layer, InputLayer) and not node["inputs"]:
                tensors.append(layer.output)
                continue
            args = [tensors[i] for i in node["inputs"]]
            tensors.append(layer(args if len(args) > 1 else args[0],
                                 **node.get("call_kwargs", {})))
        return cls(tensors[config["input"]], tensors[config["output"]], name=config["name"])

    def _compile_config(self):
        if not self.compiled:
            return None
        return {"optimizer": {"class_name": type(self.optimizer).__name__,
                              "config": self.optimizer.get_config()},
                "loss": {"class_name": type(self.loss).__name__,
                         "config": self.loss.get_config()},
                "metrics": [m if isinstance(m, str) else m.name for m in self._metric_specs]}

    def save_weights(self, filepath):
        self._require_built("save_weights()")
        serialization.save({"weights": self.get_weights()}, filepath)

    def load_weights(self, filepath):
        self.set_weights(_load_checkpoint(filepath, "weights", "a file from save_weights()")["weights"])

    def save(self, filepath):
        """Writes architecture, weights, compile settings and optimizer state to one
        pydl checkpoint (pydl.save: atomic, no pickle)."""
        self._require_built("save()")
        meta = {"class_name": type(self).__name__, "config": self.get_config(),
                "compile": self._compile_config(), "build_input_shape": self._build_shape()}
        checkpoint = {"meta": meta, "weights": self.get_weights()}
        if self.optimizer is not None and self.optimizer.built:
            state = _optimizer_state_in_layout(self.optimizer.state_dict(),
                                               self.trainable_weights, to_keras=True)
            checkpoint["optimizer"] = {"state": state, "iterations": self.optimizer.iterations}
        serialization.save(checkpoint, filepath)

    def _build_shape(self):
        return list(self.input.shape)


def _layer_config(layer):
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def _optimizer_state_in_layout(state, weights, to_keras):
    """The optimizer's state_dict `state` (over `weights`, in order) with the per-element
    arrays of weights stored in their kernel's layout turned to Keras's (to_keras) or
    from it: saved files hold them in Keras's layout, as they hold the weights."""
    converted = {}
    for key, entries in state["state"].items():
        weight = weights[int(key)]
        if isinstance(weight, KerasWeight):
            shape = weight.shape if to_keras else weight.to_keras(weight.data).shape
            turn = weight.to_keras if to_keras else weight.from_keras
            entries = {name: np.ascontiguousarray(turn(value))
                       if isinstance(value, np.ndarray) and value.shape == shape else value
                       for name, value in entries.items()}
        converted[key] = entries
    return {**state, "state": converted}


def _layer_from_config(entry, custom_objects=None):
    classes = {**layers_module.LAYER_CLASSES, **(custom_objects or {})}
    name = entry["class_name"]
    if name not in classes:
        raise ValueError(f"Unknown layer class {name!r}; pass it in custom_objects")
    return classes[name].from_config(dict(entry["config"]))


def _load_checkpoint(filepath, key, what):
    """pydl.load(filepath), checked to be a dict holding `key`."""
    checkpoint = serialization.load(filepath)
    if not isinstance(checkpoint, dict) or key not in checkpoint:
        raise ValueError(f"{filepath} is not {what} (no {key!r} entry)")
    return checkpoint


class Sequential(Model):
    """A stack of layers, each fed the previous one's output."""

    def __init__(self, layers=None, name=None):
        super().__init__(name=name)
        self._layers = []
        self._input_shape = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, KerasTensor) and isinstance(layer.layer, InputLayer):
            layer = layer.layer
        if isinstance(layer, InputLayer):
            if self._layers:
                raise ValueError("Sequential: an Input can only come first")
            self._input_shape = layer.batch_input_shape
            self._build_layers()
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a keras layer, got {type(layer).__name__}")
        if not self._layers and layer.batch_input_shape is not None:
            self._input_shape = layer.batch_input_shape
        self._layers.append(layer)
        self._build_layers()

    def pop(self):
        if not self._layers:
            raise TypeError("There are no layers in the model.")
        return self._layers.pop()

    @property
    def layers(self):
        return list(self._layers)

    def build(self, input_shape=None):
        if input_shape is not None:
            self._input_shape = tuple(input_shape)
        if self._input_shape is None:
            raise ValueError("Sequential.build needs an input_shape (with None for the batch)")
        self._build_layers()

    def _build_layers(self):
        """With a known input shape, builds every layer and records its output shape."""
        if self._input_shape is None:
            return
        shape = self._input_shape
        for layer in self._layers:
            layer._ensure_built(shape)
            shape = layer.compute_output_shape(shape)
            layer.output_shape = shape

    def _run(self, x, training):
        if not self._layers:
            raise ValueError("Sequential: the model has no layers")
        if self._input_shape is None:
            self._input_shape = (None, *x.shape[1:])
            self._build_layers()
        for layer in self._layers[:-1]:
            x = layer(x, training)
        last = self._layers[-1]
        return last.forward_pre_activation(x, training), last

    def _output_shape(self):
        return self._layers[-1].output_shape

    def _build_shape(self):
        return None if self._input_shape is None else list(self._input_shape)

    def get_config(self):
        return {"name": self.name, "layers": [_layer_config(layer) for layer in self._layers]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls([_layer_from_config(c, custom_objects) for c in config["layers"]],
                   name=config["name"])


def load_model(filepath, custom_objects=None, compile=True):
    """The model save() wrote: architecture, weights and (with compile) the compile
    settings and optimizer state.

    >>> import os, tempfile
    >>> import numpy as np
    >>> from pydl import keras
    >>> model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> model.save(path)
    >>> x = np.ones((1, 3))
    >>> np.array_equal(keras.load_model(path).predict(x, verbose=0), model.predict(x, verbose=0))
    True
    """
    checkpoint = _load_checkpoint(filepath, "meta", "a model saved by pydl.keras "
                                  "(a file from save_weights() loads with model.load_weights)")
    meta = checkpoint["meta"]
    classes = {"Sequential": Sequential, "Model": Model, "Functional": Model}
    cls = classes.get(meta["class_name"], Model)
    model = cls.from_config(meta["config"], custom_objects)
    if isinstance(model, Sequential) and meta["build_input_shape"] is not None:
        model.build(tuple(meta["build_input_shape"]))
    model.set_weights(checkpoint["weights"])
    settings = meta.get("compile")
    if compile and settings:
        optimizer_cls = getattr(optimizers, settings["optimizer"]["class_name"])
        loss_config = settings["loss"]
        loss_cls = getattr(losses, loss_config["class_name"], None)
        if loss_cls is None:
            raise ValueError(f"cannot restore the custom loss {loss_config['config']['name']!r};"
                             " load with compile=False and compile again")
        model.compile(optimizer_cls.from_config(settings["optimizer"]["config"]),
                      loss_cls(from_logits=loss_config["config"]["from_logits"]),
                      settings["metrics"])
        if "optimizer" in checkpoint:
            model.optimizer.build(model.trainable_weights)
            model.optimizer.load_state_dict(_optimizer_state_in_layout(
                checkpoint["optimizer"]["state"], model.trainable_weights, to_keras=False))
            model.optimizer.iterations = checkpoint["optimizer"]["iterations"]
    return model


__all__ = ["Model", "Sequential", "load_model"]

