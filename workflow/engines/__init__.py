"""How dvc.yaml becomes a run: DVC's parser and lock file, Snakemake's rules, cluster requests."""
