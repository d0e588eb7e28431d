"""Energy-based families (Goodfellow et al. ch. 20; Foster 2nd ed. ch. 7): a model scores each image
with an energy E(x), p(x) ∝ exp(−E(x)), and samples by Markov chains (Langevin, Gibbs) rather than
by one pass through a generator."""
