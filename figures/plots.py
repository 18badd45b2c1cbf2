"""Plots of the reference SiLU and sinusoidal step embeddings, the answers to the plotting cells."""


import torch as t
from matplotlib.figure import Figure

from figures import lesson, style

STEPS = 50  # steps 0 to 49, as in the lesson's plotting exercise
EMBEDDING_SIZE = 128


def silu() -> Figure:
    xs = t.linspace(-5, 5, 201)
    ys = lesson.solution().swish(xs)
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(xs.numpy(), ys.numpy(), color=style.BLUE, label="SiLU(x) = x \u00b7 sigmoid(x)")
    ax.plot(xs.numpy(), xs.clamp(min=0).numpy(), linestyle="--", color="grey",
            label="ReLU(x), for comparison")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set(xlabel="x", ylabel="activation", title="The sigmoid linear unit (SiLU, Swish)",
           xlim=(-5, 5))
    ax.legend(loc="upper left")
    return fig


def _embeddings() -> t.Tensor:
    """(STEPS, EMBEDDING_SIZE): the embedding of each step 0, 1, ..., STEPS - 1."""
    embed = lesson.solution().SinusoidalPositionEmbeddings(EMBEDDING_SIZE)
    with t.no_grad():
        return embed(t.arange(STEPS))


def embedding_heatmap() -> Figure:
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(_embeddings().numpy(), cmap="RdBu", aspect="auto", vmin=-1, vmax=1)
    ax.set(xlabel="embedding dimension", ylabel="number of noise steps",
           title=f"Sinusoidal embeddings of steps 0 to {STEPS - 1} (size {EMBEDDING_SIZE})")
    fig.colorbar(image, ax=ax, label="value")
    return fig


def embedding_dots() -> Figure:
    embeddings = _embeddings()
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow((embeddings @ embeddings.T).numpy(), cmap="viridis")
    ax.set(xlabel="number of noise steps", ylabel="number of noise steps",
           title="Dot products between step embeddings")
    fig.colorbar(image, ax=ax, label="dot product")
    return fig


DRAWINGS = {
    "w3d4_silu.png": silu,
    "w3d4_pos_embedding_heatmap.png": embedding_heatmap,
    "w3d4_pos_embedding_dots.png": embedding_dots,
}
