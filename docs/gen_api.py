"""Writes docs/API.md: the PyTorch-style and Keras-style surface of pydl, read from the
code (each namespace's public names, signatures and the first line of their
docstrings), and the names from a checklist of what tutorials use that pydl does not
have. Run `python docs/gen_api.py` (in a dev checkout: `PYTHONPATH=. python
docs/gen_api.py`) after changing the API; tests/test_docs.py fails while the page
differs from what this script generates from the pydl it imports."""
import importlib
import inspect
import pathlib

PAGE = pathlib.Path(__file__).with_name("API.md")

# (title, module, attribute holding the names or None for the module's own) in page order.
TORCH_NAMESPACES = [
    ("pydl: tensors and functions", "pydl", None),
    ("pydl.Tensor: methods and attributes", "pydl", "Tensor"),
    ("pydl.nn: layers and losses", "pydl.nn", None),
    ("pydl.nn.Module: methods", "pydl.nn", "Module"),
    ("pydl.nn.functional", "pydl.nn.functional", None),
    ("pydl.nn.init", "pydl.nn.init", None),
    ("pydl.nn.utils", "pydl.nn.utils", None),
    ("pydl.optim", "pydl.optim", None),
    ("pydl.optim.lr_scheduler", "pydl.optim.lr_scheduler", None),
    ("pydl.data (also pydl.utils.data)", "pydl.data", None),
    ("pydl.datasets", "pydl.datasets", None),
    ("pydl.profiler", "pydl.profiler", None),
]
KERAS_NAMESPACES = [
    ("pydl.keras", "pydl.keras", None),
    ("pydl.keras.Model: methods", "pydl.keras", "Model"),
    ("pydl.keras.layers", "pydl.keras.layers", None),
    ("pydl.keras.losses", "pydl.keras.losses", None),
    ("pydl.keras.metrics", "pydl.keras.metrics", None),
    ("pydl.keras.optimizers", "pydl.keras.optimizers", None),
    ("pydl.keras.callbacks", "pydl.keras.callbacks", None),
    ("pydl.keras.activations", "pydl.keras.activations", None),
    ("pydl.keras.initializers", "pydl.keras.initializers", None),
    ("pydl.keras.utils", "pydl.keras.utils", None),
    ("pydl.keras.datasets", "pydl.keras.datasets", None),
]

# What PyTorch and Keras tutorials commonly use, by where pydl would have it. The page
# lists the ones pydl lacks; the ones it has appear in the tables above.
TORCH_CHECKLIST = {
    "pydl": "tensor zeros ones full empty eye arange linspace logspace rand randn randint "
            "randperm zeros_like ones_like full_like empty_like rand_like randn_like "
            "randint_like cat stack where einsum matmul bmm mm outer meshgrid tril triu "
            "cumsum prod allclose isnan isclose multinomial bernoulli normal manual_seed "
            "no_grad enable_grad inference_mode from_numpy save load compile jit fft linalg "
            "float16 bfloat16 complex64",
    "pydl.Tensor": "view reshape permute transpose contiguous unsqueeze squeeze expand repeat "
                   "flatten clamp clamp_ masked_fill masked_fill_ gather scatter scatter_ "
                   "scatter_add_ index_select index_add_ narrow roll flip sort argsort topk "
                   "chunk split unbind all any cumsum prod norm sin cos square log1p round "
                   "floor sign nonzero logsumexp new_zeros type_as half bfloat16 fill_ copy_ "
                   "add_ mul_ zero_ normal_ uniform_ register_hook detach item tolist numpy",
    "pydl.nn": "Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d MaxPool1d MaxPool2d "
               "MaxPool3d AvgPool1d AvgPool2d AdaptiveAvgPool1d AdaptiveAvgPool2d "
               "AdaptiveMaxPool2d BatchNorm1d BatchNorm2d GroupNorm InstanceNorm2d LayerNorm "
               "Dropout Dropout2d Embedding EmbeddingBag RNN LSTM GRU Transformer "
               "TransformerEncoder TransformerEncoderLayer MultiheadAttention ReLU LeakyReLU "
               "ELU SELU GELU SiLU Mish Softplus Hardtanh ReLU6 PReLU Softmax LogSoftmax "
               "Upsample PixelShuffle Identity Flatten Unflatten ModuleDict ParameterList "
               "CrossEntropyLoss NLLLoss MSELoss L1Loss SmoothL1Loss HuberLoss BCELoss "
               "BCEWithLogitsLoss KLDivLoss CTCLoss TripletMarginLoss",
    "pydl.nn.Module": "parameters named_parameters buffers register_buffer named_modules "
                      "children apply train eval to cuda state_dict load_state_dict zero_grad "
                      "requires_grad_ register_forward_hook register_forward_pre_hook "
                      "register_full_backward_hook half",
    "pydl.nn.functional": "relu gelu silu elu leaky_relu softmax log_softmax cross_entropy "
                          "nll_loss mse_loss l1_loss smooth_l1_loss kl_div binary_cross_entropy "
                          "binary_cross_entropy_with_logits one_hot pad interpolate conv1d "
                          "conv2d conv_transpose2d max_pool1d max_pool2d avg_pool2d "
                          "adaptive_avg_pool2d dropout dropout2d normalize cosine_similarity "
                          "embedding layer_norm batch_norm scaled_dot_product_attention",
    "pydl.nn.utils": "clip_grad_norm_ clip_grad_value_ parameters_to_vector",
    "pydl.optim": "SGD Adam AdamW RMSprop Adagrad Adadelta Adamax NAdam RAdam LBFGS",
    "pydl.optim.lr_scheduler": "StepLR MultiStepLR ExponentialLR CosineAnnealingLR "
                               "CosineAnnealingWarmRestarts OneCycleLR CyclicLR "
                               "ReduceLROnPlateau LambdaLR LinearLR ConstantLR SequentialLR "
                               "ChainedScheduler PolynomialLR",
    "pydl.data": "Dataset TensorDataset DataLoader random_split Subset ConcatDataset "
                 "IterableDataset Sampler WeightedRandomSampler",
}
KERAS_CHECKLIST = {
    "pydl.keras": "Sequential Model Input load_model layers losses metrics optimizers "
                  "callbacks activations initializers regularizers utils datasets "
                  "preprocessing applications",
    "pydl.keras.layers": "Dense Conv1D Conv2D Conv3D Conv2DTranspose SeparableConv2D "
                         "DepthwiseConv2D MaxPooling1D MaxPooling2D AveragePooling1D "
                         "AveragePooling2D GlobalAveragePooling1D GlobalAveragePooling2D "
                         "GlobalMaxPooling1D GlobalMaxPooling2D Flatten Reshape Permute "
                         "RepeatVector Dropout SpatialDropout2D GaussianNoise "
                         "BatchNormalization LayerNormalization GroupNormalization Embedding "
                         "SimpleRNN LSTM GRU Bidirectional TimeDistributed ConvLSTM2D "
                         "MultiHeadAttention Attention Activation ReLU LeakyReLU PReLU ELU "
                         "Softmax UpSampling2D ZeroPadding2D Cropping2D Concatenate Add "
                         "Multiply Average Lambda Normalization Rescaling Resizing "
                         "TextVectorization",
    "pydl.keras.losses": "CategoricalCrossentropy SparseCategoricalCrossentropy "
                         "BinaryCrossentropy MeanSquaredError MeanAbsoluteError Huber "
                         "KLDivergence CosineSimilarity",
    "pydl.keras.optimizers": "SGD Adam AdamW RMSprop Adagrad Adadelta Adamax Nadam",
    "pydl.keras.callbacks": "EarlyStopping ModelCheckpoint ReduceLROnPlateau "
                            "LearningRateScheduler CSVLogger TensorBoard TerminateOnNaN "
                            "BackupAndRestore",
    "pydl.keras.metrics": "Accuracy CategoricalAccuracy SparseCategoricalAccuracy "
                          "BinaryAccuracy AUC Precision Recall",
    "pydl.keras.utils": "to_categorical plot_model set_random_seed",
}


def holder(module_name, attribute):
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def public_names(obj):
    """The names a namespace offers: its __all__, a class's public attributes, or a
    module's own public classes and functions."""
    if inspect.isclass(obj):
        names = set()
        for klass in obj.__mro__[:-1]:
            names.update(n for n in vars(klass) if not n.startswith("_"))
        return sorted(names)
    if hasattr(obj, "__all__"):
        return [n for n in obj.__all__ if hasattr(obj, n)]
    return sorted(n for n, v in vars(obj).items()
                  if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
                  and v.__module__ == obj.__name__)


def signature(obj, member):
    """The call signature, without self for a class member; a function form of a
    Tensor method (pydl.exp) shows the method's, its tensor argument named input."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = [p.replace(name="input") if p.name == "self" else p
              for p in sig.parameters.values() if not (member and p.name == "self")]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def summary(obj):
    if isinstance(obj, property):
        obj = obj.fget
    if inspect.ismemberdescriptor(obj):
        return ""
    if not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj)):
        return type(obj).__name__
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ").replace("|", "\\|")


def table(title, module_name, attribute):
    space = holder(module_name, attribute)
    lines = [f"### {title}", "", "| name | what it is |", "|---|---|"]
    for name in public_names(space):
        obj = inspect.getattr_static(space, name) if inspect.isclass(space) else \
            getattr(space, name)
        shown = obj.fget if isinstance(obj, property) else obj
        if isinstance(shown, (staticmethod, classmethod)):
            shown = shown.__func__
        if inspect.ismodule(shown):
            entry = f"`{name}` (module)"
        elif isinstance(obj, property) or inspect.ismemberdescriptor(obj):
            entry = f"`{name}` (attribute)"
        else:
            entry = f"`{name}{signature(shown, inspect.isclass(space))}`".replace("|", "\\|")
        lines.append(f"| {entry} | {summary(obj)} |")
    return lines + [""]


def namespace(where):
    """The module, or the class in it, that a dotted name like "pydl.nn.Module" names."""
    module_name, _, last = where.rpartition(".")
    return holder(module_name, last) if last[:1].isupper() else holder(where, None)


def missing(checklist):
    """Checklist names each namespace lacks, as {namespace: [names]}."""
    absent = {}
    for where, names in checklist.items():
        gone = [n for n in names.split() if not hasattr(namespace(where), n)]
        if gone:
            absent[where] = gone
    return absent


def render():
    lines = ["# pydl API", "",
             "Generated by `python docs/gen_api.py` from the code: every public name of each "
             "namespace with its signature and the first paragraph of its docstring (each "
             "docstring has a runnable example; `tests/test_docs.py` runs them all and fails "
             "when this page is stale).", "",
             "## PyTorch-style surface", ""]
    for spec in TORCH_NAMESPACES:
        lines += table(*spec)
    lines += ["## Keras-style surface", ""]
    for spec in KERAS_NAMESPACES:
        lines += table(*spec)
    lines += ["## Not supported", "",
              "Names from a checklist of what PyTorch and Keras tutorials commonly use that "
              "pydl does not have (yet). Everything else on the checklist is in the tables "
              "above.", ""]
    for title, checklist in (("PyTorch", TORCH_CHECKLIST), ("Keras", KERAS_CHECKLIST)):
        lines += [f"### {title}", ""]
        for where, names in missing(checklist).items():
            lines.append(f"- `{where}`: " + ", ".join(f"`{n}`" for n in names))
        lines.append("")
    lines += ["Also not supported: complex, float16 and bfloat16 tensors, sparse tensors, "
              "higher-order gradients "
              "(`create_graph`), `torch.compile`/TorchScript, convolutions other than 1-D and "
              "2-D, interpolation modes other than `nearest`, `padding_mode` other than "
              "`'zeros'`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    PAGE.write_text(render())
    print(f"wrote {PAGE}")
