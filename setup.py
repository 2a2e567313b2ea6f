"""Build the compiled metric kernels (dimatting._metrics_c); everything else is in pyproject.toml.

`pip install -e .` compiles them in place (they need a C compiler and the Python headers); a source checkout
used through PYTHONPATH builds them with `python setup.py build_ext --inplace`.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Exact IEEE arithmetic in the written order: no fused multiply-add contraction, no fast-math reassociation,
# so GRAD's float64 filter gives the same bits on every x86-64 CPU. -fno-math-errno only lets sqrt inline.
GCC_FLAGS = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-fno-math-errno"]


class BuildExt(build_ext):
    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                ext.extra_compile_args = GCC_FLAGS
        super().build_extensions()


setup(
    ext_modules=[Extension("dimatting._metrics_c", ["src/dimatting/_metrics_c.c"])],
    cmdclass={"build_ext": BuildExt},
)
