/**
 * The endpoint's one production variant: it takes all traffic. Its name is in the variant's CloudWatch dimensions
 * (VariantName) and in the Application Auto Scaling resource id (endpoint/<name>/variant/<variant>).
 */
export const VARIANT_NAME = 'AllTraffic';
