"""distill: knowledge distillation of reasoning models (teacher traces -> filtered data -> student)."""

from distill.environment import package_version

__version__ = package_version()
