"""EK-FAC scores with kronfluence on a `bench export --model` folder: python kronfluence_scores.py EXPORT OUT.npy"""
import json
import sys

import numpy as np
import torch
from datasets import load_from_disk
from kronfluence.analyzer import Analyzer, prepare_model
from kronfluence.arguments import FactorArguments
from kronfluence.task import Task
from kronfluence.utils.dataset import DataLoaderKwargs
from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq

export, out = sys.argv[1], sys.argv[2]
trained = set(json.load(open(f"{export}/model.json"))["trained_parameters"])
model = AutoModelForCausalLM.from_pretrained(f"{export}/model").eval()
data = load_from_disk(f"{export}/tokenized")
mlp = [n for n, m in model.named_modules() if type(m) is torch.nn.Linear and "mlp" in n and f"{n}.weight" in trained]


class LMTask(Task):  # each example's loss: the mean over its labelled tokens, summed over the batch
    def compute_train_loss(self, batch, model, sample=False):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        if sample:  # the true Fisher: targets drawn from the model where a label is
            labels = torch.where(labels == -100, -100, torch.distributions.Categorical(logits=logits.detach()).sample())
        tokens = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        return (tokens.sum(1) / (labels != -100).sum(1)).sum()

    compute_measurement = compute_train_loss  # the test side: the same loss on the real labels

    def get_influence_tracked_modules(self):
        return mlp

    def get_attention_mask(self, batch):  # padding stays out of the covariances
        return batch["attention_mask"]


analyzer = Analyzer("export", prepare_model(model, LMTask()), LMTask(), cpu=True, output_dir=f"{out}.kronfluence")
pad = DataCollatorForSeq2Seq(AutoTokenizer.from_pretrained(f"{export}/model"))  # pads labels with -100
analyzer.set_dataloader_kwargs(DataLoaderKwargs(collate_fn=pad))
analyzer.fit_all_factors("ekfac", data["train"], per_device_batch_size=16, factor_args=FactorArguments("ekfac"))
analyzer.compute_pairwise_scores("scores", "ekfac", data["test"], data["train"], 64, per_device_train_batch_size=16)
np.save(out, analyzer.load_pairwise_scores("scores")["all_modules"].numpy())
