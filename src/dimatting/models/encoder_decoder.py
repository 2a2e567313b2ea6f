"""SimpleEncoderDecoder: encoder then decoder, under mmagic's module names (`backbone.encoder/decoder`)."""

from __future__ import annotations

from torch import Tensor, nn


class SimpleEncoderDecoder(nn.Module):
    """Holds the encoder and decoder so that state-dict keys read `backbone.encoder.*` / `backbone.decoder.*`."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))

    def init_weights(self) -> None:
        self.encoder.init_weights()
        self.decoder.init_weights()
