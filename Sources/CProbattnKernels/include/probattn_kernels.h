// CProbattnKernels: element-wise inner loops of the blocked attention kernel, in C so that they vectorise
// (compiled once per instruction set with target_clones and picked at load time).
#ifndef PROBATTN_KERNELS_H
#define PROBATTN_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/// Normalises every row of a strip of logits in place, as the reference layer does:
///   x_ij ← x_ij + bias_j (when bias is not NULL);  m_i = max_j x_ij;
///   W_ij = exp(x_ij − m_i) / (Σ_j exp(x_ij − m_i) + eps).
/// rows × cols values with row stride ld. Exponents below −87.3 flush to 0 (no denormals). A row whose maximum
/// is −∞ becomes all zeros. When row_log_normaliser is not NULL it receives m_i + log(Σ_j exp(x_ij − m_i) + eps)
/// per row (−∞ for an empty row), so that log W_ij = x_ij − row_log_normaliser[i]. Called by the blocked kernel
/// once per row block and weight update, and by the plain path for unmasked weights.
void probattn_softmax_strip(float *x, int rows, int cols, int ld, const float *bias, float eps,
                            float *row_log_normaliser);

/// exp(x_i) for n values in place, with the same polynomial as probattn_softmax_strip (for tests).
void probattn_exp(float *x, int n);

#ifdef __cplusplus
}
#endif

#endif
