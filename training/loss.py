# GAN losses with lazy regularisation: StyleGAN2's non-saturating logistic loss with R1 and
# path-length regularisation (Karras et al. 2020, "Analyzing and Improving the Image Quality of
# StyleGAN", Sec. 3.2 and 4), and the hinge loss used by BigGAN (Brock et al. 2019, Sec. 3).

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix
from torch_utils.ops import upfirdn2d

#----------------------------------------------------------------------------
# Adversarial terms by name: each maps logits to per-sample losses.
# 'logistic' is the non-saturating loss of Goodfellow et al. 2014; 'hinge' that of Lim & Ye 2017.

def _logistic_g(fake_logits):         return F.softplus(-fake_logits)
def _logistic_d_fake(fake_logits):    return F.softplus(fake_logits)
def _logistic_d_real(real_logits):    return F.softplus(-real_logits)
def _hinge_g(fake_logits):            return -fake_logits
def _hinge_d_fake(fake_logits):       return F.relu(1 + fake_logits)
def _hinge_d_real(real_logits):       return F.relu(1 - real_logits)

adversarial_losses = {
    'logistic': (_logistic_g, _logistic_d_fake, _logistic_d_real),
    'hinge':    (_hinge_g, _hinge_d_fake, _hinge_d_real),
}

PHASES = ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth')

#----------------------------------------------------------------------------
# Base of all losses used by the training loop. A loss owns its running state (tensors named in
# `state_names`), which the loop saves and restores through state_dict() / load_state_dict().

class Loss:
    state_names = ()    # Attributes holding tensors that must survive a resume (running means, statistics).

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        """Run one phase on one batch and backpropagate; returns the detached total loss."""
        raise NotImplementedError()

    def state_dict(self):
        """The loss's running state: {name: CPU tensor copy}."""
        return {name: getattr(self, name).detach().cpu().clone() for name in self.state_names}

    def load_state_dict(self, state):
        """Restore what state_dict() returned; every name must be present."""
        missing = [name for name in self.state_names if name not in state]
        if missing:
            raise ValueError(f'{type(self).__name__}.load_state_dict: missing {", ".join(missing)}.')
        with torch.no_grad():
            for name in self.state_names:
                getattr(self, name).copy_(state[name])

#----------------------------------------------------------------------------
# StyleGAN2 loss: adversarial term + R1 on reals + path-length regularisation + style mixing.

class StyleGAN2Loss(Loss):
    state_names = ('pl_mean', 'real_sign_stats')

    def __init__(self, device, G, D,
        augment_pipe        = None,         # AugmentPipe applied to every image D sees; None = no augmentation.
        r1_gamma            = 10,           # R1 weight gamma (penalty gamma/2 * |grad D(x)|^2); 0 = off.
        style_mixing_prob   = 0.9,          # Probability of mixing two latents at a random layer cutoff; 0 = off.
        pl_weight           = 2,            # Path-length regularisation weight; 0 = off.
        pl_batch_shrink     = 2,            # Path-length batch = batch_gpu // pl_batch_shrink.
        pl_decay            = 0.01,         # Decay of the running path-length mean.
        pl_no_weight_grad   = False,        # Skip conv weight gradients inside the path-length gradient.
        adversarial         = 'logistic',   # Adversarial term: a key of `adversarial_losses`.
        blur_init_sigma     = 0,            # Gaussian blur (sigma, pixels) of every image D sees at the start; 0 = off (StyleGAN3-R: 10).
        blur_fade_kimg      = 0,            # The blur fades linearly to 0 over this many kimg; 0 = no blur.
        d_joint_pass        = False,        # Dmain in one D pass over fakes and reals (same math, fewer calls; see _d_main_joint).
        aux_weight          = 0,            # Weight of the auxiliary classifier's cross-entropy (D on reals, G on fakes); 0 = off.
        reuse_fakes         = False,        # Dmain scores the fakes of the step's Gmain (made before G's update): one G pass less per step.
    ):
        if adversarial not in adversarial_losses:
            raise ValueError(f'Unknown adversarial loss {adversarial!r}; valid: {", ".join(adversarial_losses)}.')
        has_mapping = hasattr(G, 'mapping') and hasattr(G, 'synthesis')
        if not has_mapping and (pl_weight != 0 or style_mixing_prob != 0):
            raise ValueError(f'{type(G).__name__} has no mapping/synthesis split: set pl_weight=0 and style_mixing_prob=0.')
        self.device = device
        self.G = G
        self.D = D
        self.augment_pipe = augment_pipe
        self.r1_gamma = r1_gamma
        self.style_mixing_prob = style_mixing_prob
        self.pl_weight = pl_weight
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = pl_decay
        self.pl_no_weight_grad = pl_no_weight_grad
        self.blur_init_sigma = blur_init_sigma
        self.blur_fade_kimg = blur_fade_kimg
        self.blur_sigma = 0 # Of the current phase; set from cur_nimg by accumulate_gradients.
        self.loss_g, self.loss_d_fake, self.loss_d_real = adversarial_losses[adversarial]
        if aux_weight != 0 and not getattr(D, 'aux_classifier', False):
            raise ValueError(f'aux_weight needs a discriminator with an auxiliary classifier (aux_classifier=True); {type(D).__name__} has none.')
        self.aux_weight = aux_weight
        self.d_group_size = joint_group_size(D) if d_joint_pass else None
        if d_joint_pass and self.d_group_size is None:
            raise ValueError(f'd_joint_pass needs a discriminator whose samples meet only in fixed-size minibatch-stddev groups '
                f'and that keeps no running state; {type(D).__name__} does not: set d_joint_pass=False.')
        self.reuse_fakes = reuse_fakes
        self._fakes = []        # (images, labels) of this step's Gmain rounds, detached, for Dmain (reuse_fakes).
        self._last_phase = None
        self.pl_mean = torch.zeros([], device=device)
        self.real_sign_stats = torch.zeros([2], dtype=torch.float64, device=device) # [count, sum] of sign(D(real)) for ADA.

    # Generate images; returns (images, ws) with ws None for generators without a mapping network.
    # Every training call tracks w_avg (update_emas), as the original; the style-mixing latents do not.
    def run_G(self, z, c, update_emas=True):
        if not hasattr(self.G, 'mapping'):
            return self.G(z, c), None
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0:
            cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, ws.shape[1])
            mix = torch.rand([], device=ws.device) < self.style_mixing_prob
            cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, ws.shape[1]))
            ws_mix = self.G.mapping(torch.randn_like(z), c, update_emas=False)
            layer = torch.arange(ws.shape[1], device=ws.device)[None, :, None]
            ws = torch.where(layer < cutoff, ws, ws_mix)
        return self.G.synthesis(ws, update_emas=update_emas), ws

    # Discriminator logits of the images as _d_input prepares them.
    def run_D(self, img, c):
        return self.D(self._d_input(img), c)

    # (logits, class logits) with aux, else (logits, None): the auxiliary classifier's logits from the same pass.
    def _run_D_aux(self, img, c, aux):
        if aux:
            return self.D(self._d_input(img), c, return_aux=True)
        return self.run_D(img, c), None

    # The auxiliary classifier's cross-entropy [N, 1] of class logits against one-hot labels c, weighted.
    def _aux_loss(self, side, class_logits, c):
        ce = F.cross_entropy(class_logits, c.argmax(dim=1), reduction='none')[:, None]
        training_stats.report(f'Loss/{side}/aux', ce)
        return ce * self.aux_weight

    # What D sees of the images: blurred (while the blur fades), then augmented.
    def _d_input(self, img):
        img = blur_images(img, self.blur_sigma)
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return img

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg=0):
        if phase not in PHASES:
            raise ValueError(f'Unknown phase {phase!r}; valid: {", ".join(PHASES)}.')
        self.blur_sigma = blur_sigma_at(cur_nimg, self.blur_init_sigma, self.blur_fade_kimg)
        if phase in ('Gmain', 'Gboth') and self._last_phase not in ('Gmain', 'Gboth'):
            self._fakes.clear() # A new step: fakes its Dmain did not take are stale.
        self._last_phase = phase
        if phase == 'Greg' and self.pl_weight == 0:
            return torch.zeros([], device=self.device)
        if phase == 'Dreg' and self.r1_gamma == 0:
            return torch.zeros([], device=self.device)
        terms = []
        if phase in ('Gmain', 'Gboth'):
            terms.append(self._g_main(gen_z, gen_c, gain))
        if phase in ('Greg', 'Gboth') and self.pl_weight != 0:
            terms.append(self._g_path_length(gen_z, gen_c, gain))
        if phase == 'Dmain' and self._can_join(gen_z.shape[0], real_img.shape[0]):
            return self._d_main_joint(real_img, real_c, gen_z, gen_c, gain)
        loss_fake = None
        if phase in ('Dmain', 'Dboth'):
            loss_fake = self._d_fake(gen_z, gen_c, gain)
            terms.append(loss_fake.mean())
        if phase in ('Dmain', 'Dreg', 'Dboth'):
            terms.append(self._d_real(real_img, real_c, gain, loss_fake=loss_fake,
                reg=(phase in ('Dreg', 'Dboth') and self.r1_gamma != 0)))
        return sum(terms[1:], terms[0]) if terms else torch.zeros([], device=self.device)

    # Gmain: make D call the fakes real.
    def _g_main(self, gen_z, gen_c, gain):
        gen_img, _ws = self.run_G(gen_z, gen_c)
        if self.reuse_fakes:
            self._fakes.append((gen_img.detach(), gen_c))
        gen_logits, class_logits = self._run_D_aux(gen_img, gen_c, aux=(self.aux_weight != 0))
        self._report_logits('fake', gen_logits)
        loss = self.loss_g(gen_logits)
        if class_logits is not None:
            loss = loss + self._aux_loss('G', class_logits, gen_c)
        training_stats.report('Loss/G/loss', loss)
        loss = loss.mean()
        loss.mul(gain).backward()
        return loss.detach()

    # Greg: path-length regularisation, E[(|J_w^T y| - a)^2] with y ~ N(0, I) / sqrt(H*W) (Eq. 4).
    def _g_path_length(self, gen_z, gen_c, gain):
        batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
        gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size])
        pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
        with conv2d_gradfix.no_weight_gradients(self.pl_no_weight_grad):
            pl_grads = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws],
                create_graph=True, only_inputs=True)[0]
        pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()
        pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
        self.pl_mean.copy_(pl_mean.detach())
        pl_penalty = (pl_lengths - pl_mean).square()
        training_stats.report('Loss/pl_penalty', pl_penalty)
        loss = (pl_penalty * self.pl_weight).mean()
        training_stats.report('Loss/G/reg', loss)
        (gen_img[:, 0, 0, 0] * 0 + loss).mean().mul(gain).backward()
        return loss.detach()

    # The fakes D scores in Dmain, (images, labels): with reuse_fakes those of the step's Gmain rounds in
    # their order while any are left (the batch sizes match), else new ones from gen_z and gen_c.
    def _fakes_for_d(self, gen_z, gen_c):
        if self._fakes and self._fakes[0][0].shape[0] == gen_z.shape[0]:
            return self._fakes.pop(0)
        with torch.no_grad():
            return self.run_G(gen_z, gen_c)[0], gen_c

    # Dmain, fake half: make D call the fakes fake. Returns per-sample losses.
    def _d_fake(self, gen_z, gen_c, gain):
        gen_img, gen_c = self._fakes_for_d(gen_z, gen_c)
        gen_logits = self.run_D(gen_img, gen_c)
        self._report_logits('fake', gen_logits)
        loss = self.loss_d_fake(gen_logits)
        loss.mean().mul(gain).backward()
        return loss.detach()

    # Can D score n_fake fakes and n_real reals in one pass with the groups of two passes? The
    # halves must be equal (as Loss/D/loss assumes) and fill whole minibatch-stddev groups.
    def _can_join(self, n_fake, n_real):
        g = self.d_group_size
        return g is not None and n_fake == n_real and n_fake % g == 0 and n_fake >= g

    # Dmain in one D pass. D's samples meet only in minibatch-stddev groups, which hold the samples
    # j, j + n, j + 2n, ... of a batch of n groups. So the halves are interleaved, [G, n_fake] with
    # [G, n_real] along the group axis, and every group of the joint batch is a group of one half's
    # pass: the logits, losses and gradients are those of _d_fake + _d_real, up to float rounding
    # (one backward pass sums the two halves' gradients in another order).
    def _d_main_joint(self, real_img, real_c, gen_z, gen_c, gain):
        gen_img, gen_c = self._fakes_for_d(gen_z, gen_c)
        g = self.d_group_size
        n = gen_img.shape[0] // g # Groups per half.
        halves = [(self._d_input(gen_img), gen_c), (self._d_input(real_img.detach()), real_c)]
        img = torch.cat([x.reshape(g, n, *x.shape[1:]) for x, _c in halves], dim=1).flatten(0, 1)
        c = torch.cat([c.reshape(g, n, *c.shape[1:]) for _x, c in halves], dim=1).flatten(0, 1)
        out = self.D(img, c, return_aux=True) if self.aux_weight else (self.D(img, c),)
        (gen_logits, real_logits), *aux = [_split_groups(t, g) for t in out]
        self._report_logits('fake', gen_logits)
        self._report_logits('real', real_logits)
        loss_fake, loss_real = self.loss_d_fake(gen_logits), self.loss_d_real(real_logits)
        if aux:
            loss_real = loss_real + self._aux_loss('D', aux[0][1], real_c)
        training_stats.report('Loss/D/loss', loss_fake + loss_real)
        loss_fake, loss_real = loss_fake.mean(), loss_real.mean()
        (loss_fake + loss_real).mul(gain).backward()
        return loss_fake.detach() + loss_real.detach()

    # Loss/scores/<kind> and Loss/signs/<kind>; for the reals also the sign counts of ADA's overfitting heuristic.
    def _report_logits(self, kind, logits):
        training_stats.report(f'Loss/scores/{kind}', logits)
        training_stats.report(f'Loss/signs/{kind}', logits.sign())
        if kind == 'real':
            with torch.no_grad():
                self.real_sign_stats += torch.stack([torch.tensor(logits.numel(), dtype=torch.float64, device=logits.device),
                    logits.sign().sum().to(torch.float64)])

    # Dmain real half (loss_fake given) and/or Dreg: make D call the reals real;
    # R1 = gamma/2 * |grad_x D(x)|^2 (Mescheder et al. 2018).
    def _d_real(self, real_img, real_c, gain, loss_fake, reg):
        real_img_tmp = real_img.detach().requires_grad_(reg)
        real_logits, class_logits = self._run_D_aux(real_img_tmp, real_c, aux=(loss_fake is not None and self.aux_weight != 0))
        self._report_logits('real', real_logits)
        loss = torch.zeros_like(real_logits)
        if loss_fake is not None:
            loss_real = self.loss_d_real(real_logits)
            if class_logits is not None:
                loss_real = loss_real + self._aux_loss('D', class_logits, real_c)
            training_stats.report('Loss/D/loss', loss_fake + loss_real)
            loss = loss + loss_real
        if reg:
            with conv2d_gradfix.no_weight_gradients():
                r1_grads = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img_tmp],
                    create_graph=True, only_inputs=True)[0]
            r1_penalty = r1_grads.square().sum([1, 2, 3])
            training_stats.report('Loss/r1_penalty', r1_penalty)
            loss_r1 = r1_penalty * (self.r1_gamma / 2)
            training_stats.report('Loss/D/reg', loss_r1)
            loss = loss + loss_r1[:, None]
        loss = loss.mean()
        loss.mul(gain).backward()
        return loss.detach()

# The two halves (fakes, reals) of a joint pass's output [g * 2n, ...] interleaved as _d_main_joint does.
def _split_groups(t, g):
    t = t.reshape(g, 2, t.shape[0] // (2 * g), *t.shape[1:])
    return t[:, 0].flatten(0, 1), t[:, 1].flatten(0, 1)

#----------------------------------------------------------------------------
# The minibatch-stddev group size of a discriminator whose samples meet nowhere else, or None.
# Such a D holds no state that a forward pass changes (its buffers are constant filters and
# frozen weights, no running statistics or power-iteration vectors) and at most one
# MinibatchStdLayer with a fixed group size (1 when it has none).

_CONSTANT_BUFFERS = ('resample_filter', 'weight', 'bias')

def joint_group_size(D):
    if any(name.rsplit('.', 1)[-1] not in _CONSTANT_BUFFERS for name, _ in D.named_buffers()):
        return None
    groups = [m for m in D.modules() if type(m).__name__ == 'MinibatchStdLayer']
    if len(groups) > 1:
        return None
    if not groups:
        return 1
    size = getattr(groups[0], 'group_size', None)
    return int(size) if size is not None else None

#----------------------------------------------------------------------------
# StyleGAN3's fade of D's input blur: sigma falls linearly from blur_init_sigma to 0 over the first
# blur_fade_kimg kimg (Karras et al. 2021, appendix D: it keeps D from focusing on high frequencies early).

def blur_sigma_at(cur_nimg, blur_init_sigma, blur_fade_kimg):
    if blur_fade_kimg <= 0:
        return 0
    return max(1 - cur_nimg / (blur_fade_kimg * 1e3), 0) * blur_init_sigma

#----------------------------------------------------------------------------
# Blur images with the separable kernel 2^(-(x/sigma)^2), x = -floor(3 sigma) ... floor(3 sigma), normalised
# (StyleGAN3's "Gaussian" blur); sigma < 1/3 leaves them unchanged.

def blur_images(img, blur_sigma):
    blur_size = np.floor(blur_sigma * 3)
    if blur_size <= 0:
        return img
    with torch.autograd.profiler.record_function('blur'):
        f = torch.arange(-blur_size, blur_size + 1, device=img.device).div(blur_sigma).square().neg().exp2()
        return upfirdn2d.filter2d(img, f / f.sum())

#----------------------------------------------------------------------------
# BigGAN's hinge loss, with the same phases; R1 optional (off by default), no G regularisation.

class HingeLoss(StyleGAN2Loss):
    def __init__(self, device, G, D,
        augment_pipe        = None,         # AugmentPipe applied to every image D sees; None = no augmentation.
        r1_gamma            = 0,            # Optional R1 weight; 0 = off.
    ):
        super().__init__(device, G, D, augment_pipe=augment_pipe, r1_gamma=r1_gamma,
            style_mixing_prob=0, pl_weight=0, adversarial='hinge')

#----------------------------------------------------------------------------
