"""GluonCV ``.params`` -> kseg ``.weights.h5`` for a zoo entry (``kseg convert``)."""

from pathlib import Path

from kseg.weights.download import sha1_of


def convert(model_name, params, out, verify=False):
    """Convert and write atomically; returns the built model.

    The output holds the full zoo model (with the auxiliary head where
    GluonCV's file has one). ``verify`` checks the file's SHA-1 against
    GluonCV's model store first.
    """
    import kseg
    from kseg.utils.io import atomic_path

    entry = kseg.models.get_entry(model_name)
    params, out = Path(params), Path(out)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"--out must end in .weights.h5 (Keras' weights format), got {out}")
    if not params.is_file():
        raise FileNotFoundError(f"GluonCV file not found: {params}")
    if verify:
        actual = sha1_of(params)
        if actual != entry.sha1:
            raise ValueError(
                f"SHA-1 mismatch for {params}: {actual}, but GluonCV's {entry.gluoncv_file} has {entry.sha1}"
            )
    model = kseg.models.get(model_name, weights=params, aux=entry.aux)
    with atomic_path(out, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    return model
