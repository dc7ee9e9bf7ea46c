"""The AirRep model (a BERT encoder, mean pooling, a projection) and the encoder of training steps."""

from __future__ import annotations

import numpy as np

from bench.api import Examples, attention_pool, mean_pool, progress
from methods.airrep.data import Split

CHUNKS = 6  # length-sorted chunks of a training step's examples


def _airrep_model_cls():
    import torch
    from torch import nn

    class AirRepModel(nn.Module):
        """A BERT encoder, masked mean pooling, a linear projection (the authors' `AirRepModel`)."""

        def __init__(self, bert: nn.Module, projector: nn.Linear) -> None:
            super().__init__()
            self.bert = bert
            self.projector = projector

        @property
        def num_layers(self) -> int:
            return len(self.bert.encoder.layer)

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # -> [b, d]
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            return self.projector(mean_pool(hidden, attention_mask))

        @torch.no_grad()
        def bottom(self, input_ids, attention_mask, n_frozen: int):  # -> [b, L, d]
            """Hidden states after the embeddings and the first `n_frozen` layers."""
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            return out.hidden_states[n_frozen]

        def top(self, hidden, attention_mask, n_frozen: int):  # -> [b, d]
            """Layers `n_frozen:` on given hidden states, then pooling and projection."""
            from transformers.masking_utils import create_bidirectional_mask

            mask4d = create_bidirectional_mask(config=self.bert.config, inputs_embeds=hidden,
                                               attention_mask=attention_mask)
            for layer in self.bert.encoder.layer[n_frozen:]:
                hidden = layer(hidden, mask4d)
            return self.projector(mean_pool(hidden, attention_mask))

    return AirRepModel


def new_model(bert):  # -> AirRepModel with a fresh projection
    """Wrap an encoder with a `Linear(d, d)` projection initialised as BERT initialises linears."""
    import torch
    from torch import nn

    d = bert.config.hidden_size
    projector = nn.Linear(d, d)
    std = getattr(bert.config, "initializer_range", 0.02)
    with torch.no_grad():
        projector.weight.normal_(0.0, std)
        projector.bias.zero_()
    return _airrep_model_cls()(bert, projector)


class StepEncoder:
    """Embeds the examples a training step needs, reusing the frozen lower layers' outputs."""

    def __init__(self, model, tokenizer, examples: Examples, n_frozen: int, train_all: bool, max_length: int,
                 device: str, ids: np.ndarray) -> None:
        import torch

        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.n_frozen, self.train_all, self.max_length = n_frozen, train_all, max_length
        self.examples = examples
        self.cache: dict[int, torch.Tensor] = {}
        if train_all:
            return
        texts = [examples[int(i)].text() for i in ids]
        order = np.argsort([len(t) for t in texts], kind="stable")
        with progress(total=len(ids), desc="airrep frozen layers", unit="ex") as bar:
            for start in range(0, len(order), 256):
                chunk = order[start: start + 256]
                batch = self._tokenize([texts[j] for j in chunk])
                with torch.inference_mode():
                    if n_frozen == model.num_layers:  # projection only: cache the pooled output
                        hidden = model.bert(**batch).last_hidden_state
                        pooled = mean_pool(hidden, batch["attention_mask"])
                        for row, j in enumerate(chunk):
                            self.cache[int(ids[j])] = pooled[row].clone()
                    else:
                        hidden = model.bottom(batch["input_ids"], batch["attention_mask"], n_frozen)
                        lengths = batch["attention_mask"].sum(1)
                        for row, j in enumerate(chunk):
                            self.cache[int(ids[j])] = hidden[row, : int(lengths[row])].clone()
                bar.update(len(chunk))

    def _tokenize(self, texts: list[str]):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt").to(self.device)

    def embed(self, ids: np.ndarray):  # -> torch [len(ids), d]
        """Embeddings of examples `ids` (positions in airrep_train), in that order, with gradients.

        The examples go through the trained layers in chunks of similar length (`CHUNKS` of them, shortest
        first), each padded only to its own longest: the same embeddings as one padded batch, since
        padding is masked, with about a fifth fewer token-layer products on the embedded suites' texts.
        """
        import torch

        if self.n_frozen == self.model.num_layers:
            return self.model.projector(torch.stack([self.cache[int(i)] for i in ids]))
        if self.train_all:
            texts = [self.examples[int(i)].text() for i in ids]
            lengths = [len(t) for t in texts]
        else:
            states = [self.cache[int(i)] for i in ids]
            lengths = [s.shape[0] for s in states]
        order = np.argsort(lengths, kind="stable")
        parts = []
        for chunk in np.array_split(order, min(CHUNKS, len(order))):
            if self.train_all:
                parts.append(self.model(**self._tokenize([texts[j] for j in chunk])))
                continue
            width = max(lengths[j] for j in chunk)
            hidden = torch.zeros((len(chunk), width, states[0].shape[1]), dtype=states[0].dtype, device=self.device)
            mask = torch.zeros((len(chunk), width), dtype=torch.long, device=self.device)
            for row, j in enumerate(chunk):
                hidden[row, : lengths[j]] = states[j]
                mask[row, : lengths[j]] = 1
            parts.append(self.model.top(hidden, mask, self.n_frozen))
        inverse = torch.as_tensor(np.argsort(order, kind="stable"), device=self.device)
        return torch.cat(parts).index_select(0, inverse)

    def group_scores(self, sp: Split, chosen: np.ndarray, grad: bool, pooling: str = "attention"):
        """Group scores of the split's chosen subsets for its dev examples, torch [n_dev, len(chosen)]."""
        import torch

        members = sp.members[chosen]
        used = np.unique(members)
        ids = np.concatenate([sp.dev_ids, sp.pool_ids[used]])
        with torch.set_grad_enabled(grad):
            emb = self.embed(ids)
            dev, pool = emb[: len(sp.dev_ids)], emb[len(sp.dev_ids):]
            local = torch.as_tensor(np.searchsorted(used, members), device=emb.device)
            scores = dev @ pool.T
            return attention_pool(scores, local) if pooling == "attention" else scores[:, local].sum(dim=-1)
