"""zoo's models: one file per family, each p(x, z) in Pyro primitives."""

from zoo.models.autoregressive import Autoregressive
from zoo.models.base import Model
from zoo.models.diffusion import Diffusion
from zoo.models.flow import Flow
from zoo.models.dirichlet_process import DirichletProcessMixture
from zoo.models.factor_analysis import FactorAnalysis
from zoo.models.family_mixture import Mixture
from zoo.models.gan import GAN
from zoo.models.hmm import HiddenMarkovModel
from zoo.models.m2 import SemiSupervisedVAE
from zoo.models.mixture import GaussianMixture
from zoo.models.naive_bayes import NaiveBayes
from zoo.models.registry import MODELS, get, names, register
from zoo.models.vae import VAE
from zoo.models.zero_inflated import ZeroInflatedPoisson

__all__ = ["Model", "Autoregressive", "DirichletProcessMixture", "Diffusion", "FactorAnalysis", "Flow", "GAN", "GaussianMixture", "Mixture", "HiddenMarkovModel", "NaiveBayes", "VAE", "SemiSupervisedVAE", "ZeroInflatedPoisson", "MODELS", "get", "names", "register"]
