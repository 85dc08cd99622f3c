"""The Convolution Lab's self-check: "an n×n image, a k×k kernel, stride s, padding p: how wide is the feature
map?", with the standard output-size formula ⌊(n − k + 2p)/s⌋ + 1 (Dumoulin & Visin, 2016) worked out."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .conv import conv_output_size, size_formula


@dataclass(frozen=True)
class SizeQuestion:
    """A self-check question: n×n image, k×k kernel, stride s, padding p: how big is the feature map?"""

    n: int
    k: int
    stride: int
    padding: int

    @property
    def answer(self) -> int:
        return conv_output_size(self.n, self.k, self.stride, self.padding)

    def text(self) -> str:
        return (f"An image of {self.n}×{self.n} pixels goes through a {self.k}×{self.k} kernel with stride "
                f"{self.stride} and padding {self.padding}. How many pixels wide is the feature map?")

    def check(self, guess: int) -> tuple[bool, str]:
        """(right?, an explanation that shows the formula with the numbers)."""
        formula = size_formula(self.n, self.k, self.stride, self.padding)
        working = (f"f = ⌊(n − k + 2p) / s⌋ + 1 = ⌊({self.n} − {self.k} + 2·{self.padding}) / {self.stride}⌋ + 1 "
                   f"= ⌊{formula.numerator} / {self.stride}⌋ + 1 = {self.answer}")
        if int(guess) == self.answer:
            return True, f"Right: {working}."
        hint = ""
        if formula.numerator % self.stride:
            hint = " Remember the floor: a last step that would run past the edge is not taken."
        return False, f"Not quite: you said {int(guess)}. {working}.{hint}"


def size_question(seed: int) -> SizeQuestion:
    """Question number `seed`; number 0 is a 5×5 kernel on a 28×28 MNIST digit, like LeNet-5's first layer."""
    if seed == 0:
        return SizeQuestion(28, 5, 1, 0)
    rng = random.Random(seed)
    while True:
        k = rng.choice((1, 2, 3, 3, 5, 5, 7))
        question = SizeQuestion(rng.choice((5, 6, 7, 9, 10, 12, 14, 16, 28, 32, 64, 224)), k,
                                rng.choice((1, 1, 2, 2, 3)), rng.randint(0, k // 2 + 1))
        if question.answer >= 1:
            return question
