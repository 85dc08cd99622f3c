"""CNN Explorer's engine: data sets, models, training, metrics, checkpoints and explanations.

Every Streamlit page, the CLI and the tests call this package; it never imports Streamlit.
"""

__version__ = "0.1.0"
