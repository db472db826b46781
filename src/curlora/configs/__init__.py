"""The Hydra configs, shipped inside the package (``pkg://curlora.configs``) so that an
installed ``curlora-train`` finds them wherever it runs; ``configs/`` at the repository
root is a link to this folder."""
