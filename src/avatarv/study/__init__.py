"""Human evaluation: the 5-point study over six dimensions, pairwise preference and the Turing test of the seed
("Human Evaluation", "The Turing Test"): a FastAPI + SQLite annotation app, its analysis and a DVC-friendly export."""
