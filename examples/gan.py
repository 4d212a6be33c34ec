"""A GAN (generator and discriminator MLPs, the non-saturating minimax loss) on the
2-D mixture of 8 Gaussians on a ring, reporting mode coverage; or, with --data digits,
on scikit-learn's 8x8 digits, printing samples.

Losses (D outputs logits, s = sigmoid): the discriminator minimizes
-log s(D(x)) - log(1 - s(D(G(z)))), the generator -log s(D(G(z))) (the non-saturating
form of minimizing log(1 - s(D(G(z))))). Mode coverage: of 10,000 generated points, a
mode counts as covered when at least 2% fall within 3 standard deviations of it.

The discriminator judges packs of 4 samples at once (PacGAN): with single samples
(--pack 1) this GAN collapses onto 2 of the 8 modes by 6000 steps on two of two
seeds; with packs of 4 it covers all 8 on each of seeds 0, 1 and 2 at 10000 steps,
with 513 to 908 samples per mode (the threshold is 200).

    python examples/gan.py                        # 10000 steps on the ring (~40 s)
    python examples/gan.py --data digits --steps 3000
"""
import argparse
import time

import numpy as np

import pydl
import pydl.nn as nn
import pydl.nn.functional as F

RING_MODES, RING_RADIUS = 8, 2.0


def ring_centers():
    angles = 2 * np.pi * np.arange(RING_MODES) / RING_MODES
    return RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def ring_sampler(rng, std):
    centers = ring_centers()

    def draw(n):
        return (centers[rng.integers(0, RING_MODES, n)] +
                std * rng.standard_normal((n, 2))).astype(np.float32)
    return draw


def digits_sampler(rng):
    (x, _), _ = pydl.datasets.digits.load_data(test_split=0.0)
    x = (x.reshape(len(x), 64) / 8.0 - 1.0).astype(np.float32)  # 0..16 -> -1..1

    def draw(n):
        return x[rng.integers(0, len(x), n)]
    return draw


def mlp(sizes, last=None):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers, *([last] if last else []))


def packed(discriminator, pack):
    """The discriminator judges `pack` samples at once, concatenated into one input: a
    generator that drops modes makes packs that look alike, which is easy to spot, so
    packing counters mode collapse (PacGAN) without changing the minimax loss."""
    def judge(x):
        return discriminator(x.reshape(x.shape[0] // pack, pack * x.shape[1]))
    judge.parameters = discriminator.parameters
    return judge


def mode_coverage(points, std):
    """(modes covered, fraction of points within 3 std of some mode)."""
    distance = np.linalg.norm(points[:, None, :] - ring_centers()[None], axis=2)
    near = distance < 3 * std
    per_mode = near.sum(axis=0)
    return int((per_mode >= 0.02 * len(points)).sum()), float(near.any(axis=1).mean()), per_mode


def ascii_image(pixels):
    shades = " .:-=+*#%@"
    values = np.clip((pixels.reshape(8, 8) + 1) / 2, 0, 1)
    return "\n".join("".join(shades[int(v * 9)] * 2 for v in row) for row in values)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("ring", "digits"), default="ring")
    parser.add_argument("--std", type=float, default=0.05, help="std of each ring mode")
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--noise-dim", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--pack", type=int, default=4,
                        help="samples the discriminator judges together (1: a plain GAN)")
    parser.add_argument("--samples", type=int, default=10000, help="points scored at the end")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pydl.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    if args.data == "ring":
        draw, dim = ring_sampler(rng, args.std), 2
        print(f"data: mixture of {RING_MODES} Gaussians (std {args.std}) on a ring of radius "
              f"{RING_RADIUS}")
        generator = mlp([args.noise_dim, args.hidden, args.hidden, dim])
    else:
        draw, dim = digits_sampler(rng), 64
        print("data: scikit-learn digits, 8x8 images scaled to [-1, 1]")
        generator = mlp([args.noise_dim, args.hidden, args.hidden, dim], nn.Tanh())
    if args.batch_size % args.pack:
        parser.error(f"--batch-size {args.batch_size} is not a multiple of --pack {args.pack}")
    discriminator = packed(mlp([dim * args.pack, args.hidden, args.hidden, 1]), args.pack)
    opt_g = pydl.optim.Adam(generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = pydl.optim.Adam(discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    # The learning rate decays to zero over the run so that, once the generator has
    # found every mode, its samples settle onto them instead of orbiting.
    schedules = [pydl.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 - step / args.steps)
                 for opt in (opt_g, opt_d)]
    ones = pydl.ones(args.batch_size // args.pack, 1)
    zeros = pydl.zeros(args.batch_size // args.pack, 1)

    d_losses, g_losses = [], []
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        real = pydl.tensor(draw(args.batch_size))
        fake = generator(pydl.randn(args.batch_size, args.noise_dim))
        d_loss = (F.binary_cross_entropy_with_logits(discriminator(real), ones) +
                  F.binary_cross_entropy_with_logits(discriminator(fake.detach()), zeros))
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), ones)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        d_losses.append(d_loss.item())
        g_losses.append(g_loss.item())
        for schedule in schedules:
            schedule.step()
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:6d}  D loss {np.mean(d_losses[-50:]):.4f}  "
                  f"G loss {np.mean(g_losses[-50:]):.4f}")
    seconds = time.perf_counter() - start

    with pydl.no_grad():
        samples = generator(pydl.randn(args.samples, args.noise_dim)).numpy()
    result = {"d_losses": d_losses, "g_losses": g_losses, "samples": samples}
    if args.data == "ring":
        covered, quality, per_mode = mode_coverage(samples, args.std)
        print(f"modes covered {covered}/{RING_MODES}; {quality:.1%} of {args.samples} samples "
              f"within 3 std of a mode; per mode {per_mode.tolist()} ({seconds:.1f} s)")
        result.update(modes_covered=covered, high_quality=quality)
    else:
        print(f"samples: {len(samples)} images, pixel range [{samples.min():.2f}, "
              f"{samples.max():.2f}] ({seconds:.1f} s); three of them:")
        for image in samples[:3]:
            print(ascii_image(image) + "\n")
    return result


if __name__ == "__main__":
    main()
